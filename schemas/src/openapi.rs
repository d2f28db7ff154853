//! The OpenAPI 3.1 description of the HTTP API, built from the code: each crate that
//! serves routes describes them next to its router, with the request and response types'
//! JSON Schemas derived (schemars) from the Rust types the handlers use. iocd merges the
//! descriptions and the server answers `GET /openapi.json` with the document.

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A type's schema, generated when the description is assembled.
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// The body of every error the API answers: `{"error":{"code","message","field"?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// A stable, machine-readable code, e.g. `not_found`, `invalid_query`, `unauthorized`.
    pub code: String,
    /// What a person should read.
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An HTTP method a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

impl Method {
    fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Path,
    Query,
}

#[derive(Debug, Clone)]
enum ParamSource {
    /// One parameter.
    One {
        name: &'static str,
        description: &'static str,
        required: bool,
        schema: SchemaFn,
    },
    /// Every property of a struct's schema, e.g. the struct a handler parses its query into.
    Struct(SchemaFn),
}

#[derive(Debug, Clone)]
struct Response {
    status: u16,
    description: &'static str,
    body: Option<SchemaFn>,
    content_type: &'static str,
}

/// One route and method: what it takes and answers.
#[derive(Debug, Clone)]
pub struct Operation {
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    public: bool,
    params: Vec<(Location, ParamSource)>,
    body: Option<SchemaFn>,
    responses: Vec<Response>,
}

impl Operation {
    /// An operation named `id` (unique in the document), listed under `tag`, needing a
    /// bearer token (see [`Operation::public`]).
    pub fn new(id: &'static str, tag: &'static str, summary: &'static str) -> Self {
        Operation {
            id,
            tag,
            summary,
            description: None,
            public: false,
            params: Vec::new(),
            body: None,
            responses: Vec::new(),
        }
    }

    /// A longer description (CommonMark).
    pub fn description(mut self, text: &'static str) -> Self {
        self.description = Some(text);
        self
    }

    /// Served without a token.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// A path parameter `{name}` of type `T`.
    pub fn path<T: JsonSchema>(mut self, name: &'static str, description: &'static str) -> Self {
        self.params.push((
            Location::Path,
            ParamSource::One {
                name,
                description,
                required: true,
                schema: schema_of::<T>,
            },
        ));
        self
    }

    /// An optional query parameter of type `T`.
    pub fn query<T: JsonSchema>(mut self, name: &'static str, description: &'static str) -> Self {
        self.params.push((
            Location::Query,
            ParamSource::One {
                name,
                description,
                required: false,
                schema: schema_of::<T>,
            },
        ));
        self
    }

    /// Every field of `T` (the struct the handler parses the query string into) as a query
    /// parameter, required where the struct requires it.
    pub fn query_struct<T: JsonSchema>(mut self) -> Self {
        self.params
            .push((Location::Query, ParamSource::Struct(schema_of::<T>)));
        self
    }

    /// A JSON request body of type `T`.
    pub fn body<T: JsonSchema>(mut self) -> Self {
        self.body = Some(schema_of::<T>);
        self
    }

    /// A JSON answer of type `T` with `status`.
    pub fn ok<T: JsonSchema>(self, status: u16, description: &'static str) -> Self {
        self.ok_as::<T>(status, description, "application/json")
    }

    /// An answer of type `T` with `status`, sent as `content_type` (a JSON one, such as
    /// `application/schema+json`).
    pub fn ok_as<T: JsonSchema>(
        self,
        status: u16,
        description: &'static str,
        content_type: &'static str,
    ) -> Self {
        self.respond(status, description, Some(schema_of::<T>), content_type)
    }

    /// An answer of `status` with a body of `content_type` that no Rust type describes: any
    /// object for a JSON one, else text (no body: `content_type` empty).
    pub fn ok_other(
        self,
        status: u16,
        description: &'static str,
        content_type: &'static str,
    ) -> Self {
        self.respond(status, description, None, content_type)
    }

    fn respond(
        mut self,
        status: u16,
        description: &'static str,
        body: Option<SchemaFn>,
        content_type: &'static str,
    ) -> Self {
        self.responses.push(Response {
            status,
            description,
            body,
            content_type,
        });
        self
    }

    /// An answer without a body, e.g. `204`.
    pub fn empty(self, status: u16, description: &'static str) -> Self {
        self.ok_other(status, description, "")
    }

    /// Errors the operation may answer besides those every operation may (`401`, `403`,
    /// `429` for token-guarded ones; `400`, `413` and `415` for ones with a body), each an
    /// [`ErrorBody`].
    pub fn errors(self, statuses: &[(u16, &'static str)]) -> Self {
        statuses.iter().fold(self, |op, &(status, description)| {
            op.ok::<ErrorBody>(status, description)
        })
    }

    fn render(&self, generator: &mut SchemaGenerator) -> Value {
        let mut op = Map::new();
        op.insert("operationId".into(), json!(self.id));
        op.insert("tags".into(), json!([self.tag]));
        op.insert("summary".into(), json!(self.summary));
        if let Some(d) = self.description {
            op.insert("description".into(), json!(d));
        }
        let params: Vec<Value> = self
            .params
            .iter()
            .flat_map(|(location, source)| render_params(*location, source, generator))
            .collect();
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        let mut responses = self.responses.clone();
        let mut implied = |status: u16, description: &'static str| {
            if !responses.iter().any(|r| r.status == status) {
                responses.push(Response {
                    status,
                    description,
                    body: Some(schema_of::<ErrorBody>),
                    content_type: "application/json",
                });
            }
        };
        if let Some(body) = self.body {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": body(generator)}}}),
            );
            implied(400, "the body is not valid JSON or not a valid value");
            implied(413, "the body is larger than `http.max_body_bytes`");
            implied(415, "the body is not `application/json`");
        }
        if !self.params.is_empty() {
            implied(400, "a parameter is not valid");
        }
        if self.public {
            op.insert("security".into(), json!([]));
        } else {
            implied(401, "no token, or an unknown one");
            implied(403, "the token's role may not do this");
            implied(
                429,
                "too many requests from this address; see `Retry-After`",
            );
        }
        responses.sort_by_key(|r| r.status);
        let mut rendered = Map::new();
        for r in responses {
            let mut response = Map::new();
            response.insert("description".into(), json!(r.description));
            if !r.content_type.is_empty() {
                let schema = match r.body {
                    Some(body) => body(generator).to_value(),
                    None if r.content_type.ends_with("json") => json!({"type": "object"}),
                    None => json!({"type": "string"}),
                };
                response.insert(
                    "content".into(),
                    json!({ r.content_type: {"schema": schema} }),
                );
            }
            rendered.insert(r.status.to_string(), Value::Object(response));
        }
        op.insert("responses".into(), Value::Object(rendered));
        Value::Object(op)
    }
}

fn render_params(
    location: Location,
    source: &ParamSource,
    generator: &mut SchemaGenerator,
) -> Vec<Value> {
    let location_name = match location {
        Location::Path => "path",
        Location::Query => "query",
    };
    match source {
        ParamSource::One {
            name,
            description,
            required,
            schema,
        } => {
            let mut schema = schema(generator).to_value();
            parameter_schema(&mut schema);
            vec![json!({
                "name": name,
                "in": location_name,
                "description": description,
                "required": required,
                "schema": schema,
            })]
        }
        ParamSource::Struct(schema) => {
            // Inline the struct: its properties become the parameters.
            let schema = schema(generator).to_value();
            let schema = resolve(&schema, generator);
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return Vec::new();
            };
            properties
                .iter()
                .map(|(name, property)| {
                    let mut property = property.clone();
                    parameter_schema(&mut property);
                    let description = property
                        .as_object_mut()
                        .and_then(|p| p.remove("description"))
                        .unwrap_or_else(|| json!(""));
                    json!({
                        "name": name,
                        "in": location_name,
                        "description": description,
                        "required": required.contains(&name.as_str()),
                        "schema": property,
                    })
                })
                .collect()
        }
    }
}

/// A parameter's schema as a query string can carry it: an `Option`'s `null` (and a `null`
/// default) dropped, since a parameter is absent or has a value, and unsigned integers
/// bounded by the largest the server parses.
fn parameter_schema(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.get("default") == Some(&Value::Null) {
        object.remove("default");
    }
    // `{"type": ["string", "null"], ...}`
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            object.insert("type".into(), only);
        }
    }
    // `{"anyOf": [{"$ref": ...}, {"type": "null"}], ...}`
    let is_null = |s: &Value| s.get("type").and_then(Value::as_str) == Some("null");
    if let Some(Value::Array(options)) = object.get("anyOf") {
        let mut rest: Vec<Value> = options.iter().filter(|s| !is_null(s)).cloned().collect();
        if rest.len() == 1 {
            object.remove("anyOf");
            if let Value::Object(only) = rest.remove(0) {
                for (key, value) in only {
                    object.entry(key).or_insert(value);
                }
            }
        } else {
            object.insert("anyOf".into(), Value::Array(rest));
        }
    }
    let unsigned = matches!(
        object.get("format").and_then(Value::as_str),
        Some("uint" | "uint64")
    );
    if unsigned && !object.contains_key("maximum") {
        object.insert("maximum".into(), Value::from(u64::MAX));
    }
}

/// `schema` itself, or the definition it refers to.
fn resolve(schema: &Value, generator: &SchemaGenerator) -> Value {
    let name = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"));
    match name.and_then(|n| generator.definitions().get(n)) {
        Some(definition) => definition.clone(),
        None => schema.clone(),
    }
}

/// The operations of some routes; merge several with [`ApiDescription::merge`] and render
/// the document with [`ApiDescription::document`].
#[derive(Debug, Clone, Default)]
pub struct ApiDescription {
    operations: BTreeMap<(String, Method), Operation>,
}

impl ApiDescription {
    /// No operations.
    pub fn new() -> Self {
        ApiDescription::default()
    }

    /// Adds `operation` as `method path` (an axum-style path: `{id}` parameters). A second
    /// operation for the same route replaces the first.
    pub fn route(mut self, method: Method, path: &str, operation: Operation) -> Self {
        self.operations.insert((path.to_owned(), method), operation);
        self
    }

    /// Adds every operation of `other`.
    pub fn merge(mut self, other: ApiDescription) -> Self {
        self.operations.extend(other.operations);
        self
    }

    /// Every `(method, path)` described, in order.
    pub fn routes(&self) -> impl Iterator<Item = (Method, &str)> {
        self.operations.keys().map(|(p, m)| (*m, p.as_str()))
    }

    /// The OpenAPI 3.1 document.
    pub fn document(&self, title: &str, version: &str, description: &str) -> Value {
        let mut settings = SchemaSettings::draft2020_12();
        settings.definitions_path = "/components/schemas".into();
        settings.meta_schema = None;
        let mut generator = SchemaGenerator::new(settings);
        let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for ((path, method), operation) in &self.operations {
            let rendered = operation.render(&mut generator);
            paths
                .entry(path.as_str())
                .or_default()
                .insert(method.key().to_owned(), rendered);
        }
        let schemas = generator.take_definitions(true);
        json!({
            "openapi": "3.1.0",
            "info": {"title": title, "version": version, "description": description},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer",
                        "description": "A token issued by an admin (`POST /api/v1/tokens`) or configured as its SHA-256 in `[http.auth]`."}
                }
            },
            "security": [{"bearer": []}],
        })
    }
}

/// Every `$ref` in `document`, in order.
pub fn refs(document: &Value) -> Vec<&str> {
    fn walk<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(document, &mut out);
    out
}

/// The `$ref`s of `document` that name no entry of its `components.schemas`.
pub fn dangling_refs(document: &Value) -> Vec<&str> {
    let schemas = &document["components"]["schemas"];
    refs(document)
        .into_iter()
        .filter(|r| {
            r.strip_prefix("#/components/schemas/")
                .is_none_or(|name| !schemas[name].is_object())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Query {
        /// How many.
        limit: Option<u32>,
        /// Which.
        kind: String,
    }

    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Thing {
        id: String,
    }

    fn sample() -> ApiDescription {
        ApiDescription::new()
            .route(
                Method::Get,
                "/things",
                Operation::new("listThings", "Things", "List things")
                    .query_struct::<Query>()
                    .ok::<Vec<Thing>>(200, "the things"),
            )
            .merge(
                ApiDescription::new().route(
                    Method::Post,
                    "/things/{id}",
                    Operation::new("putThing", "Things", "Store a thing")
                        .path::<String>("id", "the thing's id")
                        .body::<Thing>()
                        .ok::<Thing>(201, "stored")
                        .errors(&[(409, "taken")]),
                ),
            )
            .route(
                Method::Get,
                "/healthz",
                Operation::new("health", "Health", "Health")
                    .public()
                    .ok_other(200, "ok", "text/plain"),
            )
    }

    #[test]
    fn document_has_paths_parameters_and_components() {
        let doc = sample().document("t", "1", "d");
        assert_eq!(doc["openapi"], "3.1.0");
        let list = &doc["paths"]["/things"]["get"];
        let params = list["parameters"].as_array().unwrap();
        let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["kind", "limit"]);
        assert_eq!(params[0]["required"], true);
        assert_eq!(params[1]["required"], false);
        assert_eq!(params[1]["description"], "How many.");
        // A query parameter is absent or has a value: never `null`.
        assert_eq!(params[1]["schema"]["type"], "integer", "{}", params[1]);
        assert_eq!(
            list["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"],
            "#/components/schemas/Thing"
        );
        // Token-guarded: 401, 403 and 429 are implied; parameters imply 400.
        for status in ["400", "401", "403", "429"] {
            assert!(list["responses"][status].is_object(), "{status}");
        }
        let put = &doc["paths"]["/things/{id}"]["post"];
        assert_eq!(put["parameters"][0]["in"], "path");
        assert_eq!(
            put["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Thing"
        );
        for status in ["201", "400", "409", "413", "415"] {
            assert!(put["responses"][status].is_object(), "{status}");
        }
        let health = &doc["paths"]["/healthz"]["get"];
        assert_eq!(health["security"], json!([]));
        assert!(health["responses"]["401"].is_null());
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("Thing") && schemas.contains_key("ErrorBody"));
        assert_eq!(sample().routes().count(), 3);
        assert!(refs(&doc).contains(&"#/components/schemas/Thing"));
        assert!(dangling_refs(&doc).is_empty());
        let broken = json!({"components": {"schemas": {"A": {}}},
            "x": [{"$ref": "#/components/schemas/A"}, {"$ref": "#/components/schemas/B"}, {"$ref": "#/elsewhere"}]});
        assert_eq!(
            dangling_refs(&broken),
            ["#/components/schemas/B", "#/elsewhere"]
        );
    }
}
