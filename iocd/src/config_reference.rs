//! The configuration reference, `docs/configuration.md`, generated from the config types so it
//! cannot drift from them: every key of every section and nested table, with its type (from
//! the types' JSON Schema), its default (from [`Config::default`], serialised), its
//! description (the field's `///` doc comment, which the JSON Schema carries), the environment
//! variable that sets it, and the command-line flags that override it (read from
//! `src/main.rs`). `tests/config_reference.rs` fails when the checked-in file is stale or a
//! field has no doc comment.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::config::Config;

/// The source of the `iocd` binary, whose clap structs and `flags(...)` lists say which
/// command-line flags override which keys.
const MAIN_RS: &str = include_str!("main.rs");

/// The environment variable prefix, and the separator of its path segments.
const ENV_PREFIX: &str = "IOC__";

/// The generated reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// `docs/configuration.md`.
    pub markdown: String,
    /// Keys (`section.key`) whose field has no doc comment; the test wants none.
    pub undocumented: Vec<String>,
    /// The command-line flags found in `src/main.rs` that override a key.
    pub flags: Vec<FlagOverride>,
}

/// A command-line flag that sets a configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagOverride {
    /// The subcommand: `demo`, `run` or `simulate`.
    pub command: String,
    /// The flag, such as `--rate`.
    pub flag: String,
    /// The key it sets, such as `simulator.rate_per_s`.
    pub key: String,
    /// The value it sets when it is a switch (`--no-clickhouse` sets `false`), else `None`:
    /// the flag's argument is the value.
    pub sets: Option<String>,
}

/// One table of the file: a section, a nested table or the entries of an array of tables.
#[derive(Debug)]
struct Table {
    /// Its dotted path, such as `clickhouse.retention`.
    path: String,
    /// Whether it is the entries of an array of tables (`[[path]]`).
    array: bool,
    /// Whether it sits inside an array of tables, so its keys have no environment variable
    /// of their own.
    in_array: bool,
    /// The Rust type, from the schema's definition name.
    type_name: Option<String>,
    /// The doc of the field holding it, then the doc of its type.
    description: Vec<String>,
    keys: Vec<Key>,
}

#[derive(Debug)]
struct Key {
    name: String,
    ty: String,
    default: String,
    description: Option<String>,
}

/// Generates the reference.
pub fn generate() -> Reference {
    let schema = schemars::schema_for!(Config);
    let root = schema.as_value();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut defaults = serde_json::to_value(Config::default()).expect("the defaults serialise");
    // `[clickhouse]` is optional (absent by default); when given, unset keys take these.
    defaults["clickhouse"] = serde_json::to_value(ioc_store::ClickHouseConfig::default())
        .expect("the defaults serialise");

    let walker = Walker { defs: &defs };
    let mut tables = Vec::new();
    let mut undocumented = Vec::new();
    let root_props = root
        .get("properties")
        .and_then(Value::as_object)
        .expect("Config is a struct");
    for (name, prop) in sorted(root_props) {
        let table = walker
            .table_of(prop)
            .unwrap_or_else(|| panic!("config section `{name}` is not a table"));
        let mut description = Vec::new();
        match prop.get("description").and_then(Value::as_str) {
            Some(d) => description.push(d.to_owned()),
            None => undocumented.push(name.clone()),
        }
        walker.walk(
            table,
            name,
            Nesting::Section,
            walker.type_name(prop),
            description,
            defaults.get(name),
            &mut tables,
            &mut undocumented,
        );
    }

    let flags = flag_overrides(MAIN_RS);
    let markdown = render(&tables, &flags);
    Reference {
        markdown,
        undocumented,
        flags,
    }
}

/// Where a table sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nesting {
    /// A section or a table nested in one: every key has an environment variable.
    Section,
    /// The entries of an array of tables.
    Entries,
    /// A table inside such an entry.
    InEntries,
}

/// What a property's schema is, once `Option` and `$ref` are seen through.
enum Shape<'a> {
    /// A struct: a table of its own.
    Table(&'a Value),
    /// A list of structs: an array of tables.
    ArrayOfTables(&'a Value),
    /// Anything else: a value.
    Value,
}

struct Walker<'a> {
    defs: &'a Map<String, Value>,
}

impl<'a> Walker<'a> {
    /// `schema` with any `$ref` followed.
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        while let Some(name) = schema.get("$ref").and_then(Value::as_str) {
            let name = name.rsplit('/').next().unwrap_or(name);
            schema = self
                .defs
                .get(name)
                .unwrap_or_else(|| panic!("no schema definition `{name}`"));
        }
        schema
    }

    /// The schema inside an `Option`, and whether there was one.
    fn unwrap_option(&self, schema: &'a Value) -> (&'a Value, bool) {
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            let (null, other): (Vec<&Value>, Vec<&Value>) = any
                .iter()
                .partition(|s| s.get("type") == Some(&"null".into()));
            if null.len() == 1 && other.len() == 1 {
                return (other[0], true);
            }
        }
        if let Some(types) = schema.get("type").and_then(Value::as_array) {
            if types.contains(&"null".into()) {
                return (schema, true);
            }
        }
        (schema, false)
    }

    fn is_struct(schema: &Value) -> bool {
        schema.get("type") == Some(&"object".into()) && schema.get("properties").is_some()
    }

    fn shape(&self, schema: &'a Value) -> Shape<'a> {
        let (inner, _) = self.unwrap_option(schema);
        let inner = self.resolve(inner);
        if Self::is_struct(inner) {
            return Shape::Table(inner);
        }
        if inner.get("type") == Some(&"array".into()) {
            if let Some(items) = inner.get("items") {
                let items = self.resolve(items);
                if Self::is_struct(items) {
                    return Shape::ArrayOfTables(items);
                }
            }
        }
        Shape::Value
    }

    /// The struct schema of a section.
    fn table_of(&self, schema: &'a Value) -> Option<&'a Value> {
        match self.shape(schema) {
            Shape::Table(t) => Some(t),
            _ => None,
        }
    }

    /// The definition name a property refers to, through an `Option` or an array.
    fn type_name(&self, schema: &Value) -> Option<String> {
        let (inner, _) = self.unwrap_option(schema);
        let inner = inner.get("items").unwrap_or(inner);
        inner
            .get("$ref")
            .and_then(Value::as_str)
            .map(|r| r.rsplit('/').next().unwrap_or(r).to_owned())
    }

    /// Adds the table `schema` at `path` and the tables nested in it to `out`.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        schema: &'a Value,
        path: &str,
        nesting: Nesting,
        type_name: Option<String>,
        mut description: Vec<String>,
        defaults: Option<&Value>,
        out: &mut Vec<Table>,
        undocumented: &mut Vec<String>,
    ) {
        if let Some(d) = schema.get("description").and_then(Value::as_str) {
            if !description.iter().any(|known| known == d) {
                description.push(d.to_owned());
            }
        }
        let array = nesting == Nesting::Entries;
        let in_array = nesting != Nesting::Section;
        let props = schema
            .get("properties")
            .and_then(Value::as_object)
            .expect("a struct");
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let index = out.len();
        out.push(Table {
            path: path.to_owned(),
            array,
            in_array,
            type_name,
            description,
            keys: Vec::new(),
        });
        let mut keys = Vec::new();
        let mut nested = Vec::new();
        for (name, prop) in sorted(props) {
            let key_path = format!("{path}.{name}");
            let doc = prop
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if doc.is_none() {
                undocumented.push(key_path.clone());
            }
            // Outside arrays of tables the default is the field of `Config::default()`;
            // inside, an entry has no default, only its fields' serde defaults.
            let default_value = defaults
                .and_then(|d| d.get(name))
                .or_else(|| prop.get("default"));
            let (_, optional) = self.unwrap_option(prop);
            let (ty, default) = match self.shape(prop) {
                Shape::Table(t) => {
                    nested.push((name, t, false, doc.clone(), default_value));
                    (
                        "table".to_owned(),
                        format!("see [`[{key_path}]`](#{})", anchor(&key_path)),
                    )
                }
                Shape::ArrayOfTables(t) => {
                    nested.push((name, t, true, doc.clone(), None));
                    let default = match default_value {
                        Some(v) => toml_value(v),
                        None if required.contains(&name.as_str()) => "required".to_owned(),
                        None => "`[]`".to_owned(),
                    };
                    (
                        format!(
                            "array of tables, see [`[[{key_path}]]`](#{})",
                            anchor(&format!("[{key_path}]"))
                        ),
                        code(&default),
                    )
                }
                Shape::Value => {
                    let ty = self.value_type(prop);
                    let default = match default_value {
                        Some(Value::Null) => "unset".to_owned(),
                        Some(v) => code(&toml_value(v)),
                        None if required.contains(&name.as_str()) => "required".to_owned(),
                        None if optional => "unset".to_owned(),
                        None => panic!("no default for `{key_path}`"),
                    };
                    (ty, default)
                }
            };
            keys.push(Key {
                name: name.clone(),
                ty,
                default,
                description: doc,
            });
        }
        out[index].keys = keys;
        for (name, table, is_array, doc, default) in nested {
            let nesting = match (is_array, nesting) {
                (true, _) => Nesting::Entries,
                (false, Nesting::Section) => Nesting::Section,
                (false, _) => Nesting::InEntries,
            };
            let type_name = self.type_name(&props[name.as_str()]);
            self.walk(
                table,
                &format!("{path}.{name}"),
                nesting,
                type_name,
                doc.into_iter().collect(),
                if is_array { None } else { default },
                out,
                undocumented,
            );
        }
    }

    /// A value's type in TOML terms.
    fn value_type(&self, schema: &Value) -> String {
        let (inner, optional) = self.unwrap_option(schema);
        let named = self.type_name(inner);
        let resolved = self.resolve(inner);
        let mut ty = self.plain_type(resolved);
        if let (Some(name), true) = (named, inner.get("$ref").is_some()) {
            ty = format!("{ty} (`{name}`)");
        }
        if optional {
            ty.push_str(", optional");
        }
        ty
    }

    fn plain_type(&self, schema: &Value) -> String {
        if let Some(values) = enum_values(schema) {
            return format!("one of {}", values.join(", "));
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect(),
            _ => Vec::new(),
        };
        match types.as_slice() {
            ["integer"] => "integer".to_owned(),
            ["number"] => "float".to_owned(),
            ["boolean"] => "boolean".to_owned(),
            ["string"] => "string".to_owned(),
            ["array"] => {
                let items = schema
                    .get("items")
                    .map(|i| {
                        let resolved = self.resolve(i);
                        let t = self.plain_type(resolved);
                        match (self.type_name(schema), resolved.get("properties")) {
                            (Some(name), Some(_)) => format!("inline tables (`{name}`)"),
                            (Some(name), None) if enum_values(resolved).is_some() => {
                                format!("`{name}` ({t})")
                            }
                            _ => format!("{t}s"),
                        }
                    })
                    .unwrap_or_else(|| "values".to_owned());
                format!("array of {items}")
            }
            ["object"] => "table".to_owned(),
            _ => panic!("no TOML type for the schema {schema}"),
        }
    }
}

/// The values of a string enum, quoted, when the schema is one.
fn enum_values(schema: &Value) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values.iter().map(|v| v.as_str().map(quoted)).collect();
    }
    let variants = schema.get("oneOf").and_then(Value::as_array)?;
    variants
        .iter()
        .map(|v| {
            if let Some(c) = v.get("const").and_then(Value::as_str) {
                return Some(vec![quoted(c)]);
            }
            v.get("enum")
                .and_then(Value::as_array)
                .and_then(|vs| vs.iter().map(|v| v.as_str().map(quoted)).collect())
        })
        .collect::<Option<Vec<Vec<String>>>>()
        .map(|vs| vs.into_iter().flatten().collect())
}

fn quoted(s: &str) -> String {
    format!("`\"{s}\"`")
}

/// The properties of an object schema by name, so the output does not depend on whether
/// serde_json keeps insertion order (a feature another crate of the build may switch on).
fn sorted(props: &Map<String, Value>) -> BTreeMap<&String, &Value> {
    props.iter().collect()
}

/// A JSON value as TOML: strings quoted (JSON's escapes are TOML's), tables inline.
fn toml_value(v: &Value) -> String {
    match v {
        Value::Null => "unset".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            // serde_json writes whole floats as `200.0`, which TOML reads as a float too.
            n.to_string()
        }
        Value::String(s) => serde_json::to_string(s).expect("a string serialises"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => {
            if fields.is_empty() {
                return "{}".to_owned();
            }
            let fields: Vec<String> = sorted(fields)
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
    }
}

/// `text` as inline code, with enough backticks around it.
fn code(text: &str) -> String {
    if text.starts_with('`') || text == "required" || text == "unset" {
        return text.to_owned();
    }
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

/// GitHub's anchor of a heading `` `[path]` ``: lower case, punctuation other than `-` and `_`
/// dropped.
fn anchor(path: &str) -> String {
    format!("[{path}]")
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A doc comment as Markdown that fits in a table cell: lines joined, paragraphs kept apart,
/// rustdoc's intra-doc links (`` [`Type`] ``, `` [`Type`](path) ``) reduced to their text.
fn cell(doc: &str) -> String {
    let paragraphs: Vec<String> = doc
        .split("\n\n")
        .map(|p| {
            p.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|p| !p.is_empty())
        .collect();
    strip_intra_doc_links(&paragraphs.join("<br><br>")).replace('|', "\\|")
}

/// A doc comment as Markdown paragraphs.
fn paragraphs(doc: &str) -> String {
    doc.split("\n\n")
        .map(|p| {
            strip_intra_doc_links(
                &p.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn strip_intra_doc_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find("`]") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end + 1];
        let mut tail = &after[end + 2..];
        if let Some(target) = tail.strip_prefix('(') {
            match target.find(')') {
                Some(close) if !target[..close].contains("://") => {
                    tail = &target[close + 1..];
                }
                // A real link: keep it whole.
                _ => {
                    out.push('[');
                    out.push_str(inner);
                    out.push(']');
                    rest = tail;
                    continue;
                }
            }
        }
        out.push_str(inner);
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn env_var(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.split('.')
            .map(str::to_uppercase)
            .collect::<Vec<_>>()
            .join("__")
    )
}

fn render(tables: &[Table], flags: &[FlagOverride]) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(
        w,
        "<!-- Generated by `iocd::config_reference` from the config types: do not edit."
    );
    let _ = writeln!(
        w,
        "     Regenerate with `IOC_BLESS=1 cargo test -p iocd --test config_reference`. -->"
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "# Configuration reference");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Every key `iocd` reads, generated from the Rust config types (`iocd::config::Config` \
         and the sections it holds): the descriptions are the fields' doc comments and the \
         defaults are those of the types' `Default` implementations, so this file cannot \
         drift from the code (`cargo test -p iocd --test config_reference` fails when it has). \
         Sections and keys are in alphabetical order."
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "## How values are set");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Each key takes, from lowest to highest precedence: its default (below), the TOML file \
         given with `--config` (every section and key optional; unknown keys are refused), an \
         environment variable, then a command-line flag."
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "- **Environment**: `IOC__` followed by the key's path in upper case, with `__` \
         between the parts: `clickhouse.batch_max_rows` is \
         `IOC__CLICKHOUSE__BATCH_MAX_ROWS=100000`, `clickhouse.retention.readings_days` is \
         `IOC__CLICKHOUSE__RETENTION__READINGS_DAYS=30`. Values are parsed much like TOML \
         (figment's `Env` provider): `true`, `42`, `0.5`, text as is or in double quotes, \
         arrays in brackets (`IOC__MQTT__TOPICS='[\"ioc/v1/#\", \"city/#\"]'`) and tables \
         as `{{key=value,...}}` (`IOC__DATAFLOW__WINDOWS='[{{size_ms=60000}}]'`). Keys inside \
         an array of tables (`[[...]]`) have no variable of their own: set the whole array."
    );
    let _ = writeln!(
        w,
        "- **Optional sections**: `[clickhouse]` is absent by default; giving the section, \
         any of its keys or `--clickhouse-url` turns it on, with the defaults below for the \
         keys not given (`iocd run` always uses it)."
    );
    let _ = writeln!(
        w,
        "- **Cluster**: with several `cluster.addresses`, each process derives its own state \
         folder, MQTT client id and Kafka instance id from the shared values ([scaling \
         out](operations.md#scaling-out))."
    );
    let _ = writeln!(w);

    let _ = writeln!(w, "## Command-line flags");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Every subcommand takes `--config <file>`. These flags override a key (they win over \
         the file and the environment):"
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "| Command | Flag | Key | Sets |");
    let _ = writeln!(w, "|---|---|---|---|");
    for f in flags {
        let _ = writeln!(
            w,
            "| `iocd {}` | `{}` | [`{}`](#{}) | {} |",
            f.command,
            f.flag,
            f.key,
            anchor(f.key.rsplit_once('.').map(|(t, _)| t).unwrap_or(&f.key)),
            match &f.sets {
                Some(v) => format!("`{v}`"),
                None => "the flag's value".to_owned(),
            }
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## Sections");
    let _ = writeln!(w);
    for t in tables {
        let depth = t.path.matches('.').count();
        let _ = writeln!(
            w,
            "{}- [{}](#{})",
            "  ".repeat(depth),
            heading(t),
            anchor(&if t.array {
                format!("[{}]", t.path)
            } else {
                t.path.clone()
            })
        );
    }
    let _ = writeln!(w);

    for t in tables {
        let level = if t.path.contains('.') { "###" } else { "##" };
        let _ = writeln!(w, "{level} {}", heading(t));
        let _ = writeln!(w);
        for d in &t.description {
            let _ = writeln!(w, "{}", paragraphs(d));
            let _ = writeln!(w);
        }
        if let Some(name) = &t.type_name {
            let _ = writeln!(w, "Type: `{name}`.");
            let _ = writeln!(w);
        }
        if t.array {
            let _ = writeln!(w, "Each `[[{}]]` entry takes these keys.", t.path);
            let _ = writeln!(w);
        }
        if t.in_array {
            let _ = writeln!(w, "| Key | Type | Default | Description |");
            let _ = writeln!(w, "|---|---|---|---|");
        } else {
            let _ = writeln!(w, "| Key | Type | Default | Environment | Description |");
            let _ = writeln!(w, "|---|---|---|---|---|");
        }
        for k in &t.keys {
            let key_path = format!("{}.{}", t.path, k.name);
            let mut description = match &k.description {
                Some(d) => cell(d),
                None => "**undocumented**".to_owned(),
            };
            for f in flags.iter().filter(|f| f.key == key_path) {
                let _ = write!(
                    description,
                    "<br>Flag: `iocd {} {}`{}.",
                    f.command,
                    f.flag,
                    f.sets
                        .as_ref()
                        .map(|v| format!(" (sets `{v}`)"))
                        .unwrap_or_default()
                );
            }
            if t.in_array {
                let _ = writeln!(
                    w,
                    "| `{}` | {} | {} | {} |",
                    k.name, k.ty, k.default, description
                );
            } else {
                let env = if k.ty.starts_with("table") {
                    "—".to_owned()
                } else {
                    format!("`{}`", env_var(&key_path))
                };
                let _ = writeln!(
                    w,
                    "| `{}` | {} | {} | {} | {} |",
                    k.name, k.ty, k.default, env, description
                );
            }
        }
        let _ = writeln!(w);
    }
    while md.ends_with("\n\n") {
        md.pop();
    }
    md
}

fn heading(t: &Table) -> String {
    if t.array {
        format!("`[[{}]]`", t.path)
    } else {
        format!("`[{}]`", t.path)
    }
}

/// The flags of `iocd`'s subcommands that set a key: in each of `main.rs`'s `fn demo_config`,
/// `run_config` and `simulate_config`, every `("section.key", value(args.field...))` pair of
/// the overrides handed to `config::load`. clap names a field's flag after it
/// (`no_clickhouse` is `--no-clickhouse`); `.then_some(v)` makes a switch that sets `v`.
pub fn flag_overrides(main_rs: &str) -> Vec<FlagOverride> {
    let mut out = Vec::new();
    let mut rest = main_rs;
    while let Some(at) = rest.find("\nfn ") {
        rest = &rest[at + "\nfn ".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let Some(command) = name.strip_suffix("_config").map(str::to_owned) else {
            continue;
        };
        let body_end = rest.find("\n}").unwrap_or(rest.len());
        let body = &rest[..body_end];
        let Some(list) = body.find("flags(vec![") else {
            continue;
        };
        let mut list = &body[list..];
        let list_end = list.find("]);").unwrap_or(list.len());
        list = &list[..list_end];
        while let Some(v) = list.find("value(args.") {
            let before = list[..v].trim_end().trim_end_matches(',').trim_end();
            let key = before
                .strip_suffix('"')
                .and_then(|b| b.rfind('"').map(|q| &b[q + 1..]))
                .unwrap_or_default()
                .to_owned();
            let after = &list[v + "value(args.".len()..];
            let field: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let expression_end = after.find("\n").unwrap_or(after.len());
            let expression = &after[..expression_end];
            let sets = expression
                .find(".then_some(")
                .map(|s| &expression[s + ".then_some(".len()..])
                .and_then(|s| s.find(')').map(|e| s[..e].to_owned()));
            if !key.is_empty() {
                out.push(FlagOverride {
                    command: command.clone(),
                    flag: format!("--{}", field.replace('_', "-")),
                    key,
                    sets,
                });
            }
            list = after;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intra_doc_links_become_code() {
        assert_eq!(
            strip_intra_doc_links("see [`EpisodesConfig`] and [`open`](super::Dispatcher::open)."),
            "see `EpisodesConfig` and `open`."
        );
        assert_eq!(
            strip_intra_doc_links("[`x`](https://example.org) stays"),
            "[`x`](https://example.org) stays"
        );
    }

    #[test]
    fn env_vars_and_anchors() {
        assert_eq!(
            env_var("clickhouse.retention.readings_days"),
            "IOC__CLICKHOUSE__RETENTION__READINGS_DAYS"
        );
        assert_eq!(anchor("clickhouse.retention"), "clickhouseretention");
        assert_eq!(anchor("[http.auth.tokens]"), "httpauthtokens");
    }

    #[test]
    fn flags_are_read_from_main() {
        let flags = flag_overrides(MAIN_RS);
        let find = |command: &str, flag: &str| {
            flags
                .iter()
                .find(|f| f.command == command && f.flag == flag)
                .unwrap_or_else(|| panic!("iocd {command} {flag} not found in {flags:?}"))
        };
        assert_eq!(find("demo", "--rate").key, "simulator.rate_per_s");
        assert_eq!(find("run", "--listen").key, "http.listen");
        assert_eq!(find("simulate", "--count").key, "simulator.max_messages");
        let switch = find("demo", "--no-clickhouse");
        assert_eq!(switch.key, "demo.find_clickhouse");
        assert_eq!(switch.sets.as_deref(), Some("false"));
    }
}
