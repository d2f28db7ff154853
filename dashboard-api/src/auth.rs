//! Bearer-token access control: the token store, the middleware that checks every request
//! against the role matrix (see the crate docs) and the admin token API.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use base64::Engine;
use ioc_schemas::{Department, Principal, Role};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::{AuthConfig, TokenSpec};
use crate::rest::{ApiBody, JsonBody, RestError};
use crate::{ApiError, ApiState};

/// What every generated token starts with.
const TOKEN_PREFIX: &str = "ioc_";

/// The lowercase hex SHA-256 of `token`: what [`TokenSpec::sha256`] holds
/// (`printf %s "$TOKEN" | sha256sum`).
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A new random token: `ioc_` and the URL-safe base64 (no padding) of 32 bytes read from
/// `/dev/urandom`.
pub fn generate_token() -> Result<String, ApiError> {
    let mut bytes = [0_u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(ApiError::Random)?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn digest_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0_u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Equal without stopping at the first difference.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Where a token comes from: the configuration (or [`ApiState::add_token`]), which the API
/// cannot delete, or the token API, which keeps it in the tokens file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    Config,
    Issued,
}

#[derive(Debug, Clone)]
struct Entry {
    spec: TokenSpec,
    hash: [u8; 32],
    source: Source,
}

impl Entry {
    fn new(mut spec: TokenSpec, source: Source) -> Result<Entry, ApiError> {
        spec.validate()?;
        spec.sha256.make_ascii_lowercase();
        let hash = parse_hex(&spec.sha256)
            .ok_or_else(|| ApiError::Config(format!("token `{}`: sha256 is not hex", spec.name)))?;
        Ok(Entry { spec, hash, source })
    }

    fn principal(&self) -> Principal {
        Principal {
            name: self.spec.name.clone(),
            role: self.spec.role,
            department: self.spec.department,
        }
    }
}

/// The file of issued tokens.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenSpec>,
}

/// Why a token could not be issued or revoked.
enum Refusal {
    Invalid(String),
    Exists(String),
    Missing(String),
    Configured(String),
    Failed(ApiError),
}

/// The tokens the server knows, by hash.
#[derive(Debug)]
pub(crate) struct Tokens {
    pub(crate) enabled: bool,
    metrics_public: bool,
    file: Option<PathBuf>,
    entries: RwLock<Arc<Vec<Entry>>>,
    /// Held by a change while it is written, so changes go one at a time.
    writer: Mutex<()>,
}

impl Tokens {
    /// The configured tokens and those of the tokens file (if it exists).
    pub(crate) fn new(config: &AuthConfig) -> Result<Tokens, ApiError> {
        let mut entries = Vec::new();
        for spec in &config.tokens {
            entries.push(Entry::new(spec.clone(), Source::Config)?);
        }
        if let Some(path) = &config.tokens_file {
            for spec in load_file(path)? {
                let file_error = |reason: String| ApiError::TokensFile {
                    path: path.clone(),
                    reason,
                };
                if entries.iter().any(|e| e.spec.name == spec.name) {
                    return Err(file_error(format!(
                        "the name `{}` is already used by another token",
                        spec.name
                    )));
                }
                entries
                    .push(Entry::new(spec, Source::Issued).map_err(|e| file_error(e.to_string()))?);
            }
        }
        if config.enabled && entries.is_empty() {
            warn!("http access control is on but no token is known: only the public routes answer (/healthz, /openapi.json, the page, and /metrics while public)");
        }
        Ok(Tokens {
            enabled: config.enabled,
            metrics_public: config.metrics_public,
            file: config.tokens_file.clone(),
            entries: RwLock::new(Arc::new(entries)),
            writer: Mutex::new(()),
        })
    }

    fn snapshot(&self) -> Arc<Vec<Entry>> {
        Arc::clone(&self.entries.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn replace(&self, entries: Vec<Entry>) {
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(entries);
    }

    /// The principal of `token`, comparing its hash with every known one in constant time.
    fn lookup(&self, token: &str) -> Option<Principal> {
        let hash = digest_of(token);
        let entries = self.snapshot();
        let mut found = None;
        for entry in entries.iter() {
            if constant_time_eq(&entry.hash, &hash) {
                found = Some(entry);
            }
        }
        found.map(Entry::principal)
    }

    /// Adds a token that is not written to the tokens file and cannot be deleted.
    pub(crate) fn add_config(&self, spec: TokenSpec) -> Result<(), ApiError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = Entry::new(spec, Source::Config)?;
        let mut entries = self.snapshot().as_ref().clone();
        if entries.iter().any(|e| e.spec.name == entry.spec.name) {
            return Err(ApiError::Config(format!(
                "the token name `{}` is already used",
                entry.spec.name
            )));
        }
        entries.push(entry);
        self.replace(entries);
        Ok(())
    }

    /// Issues a new token; returns it (the only time it is seen).
    fn issue(
        &self,
        name: String,
        role: Role,
        department: Option<Department>,
    ) -> Result<String, Refusal> {
        let token = generate_token().map_err(Refusal::Failed)?;
        let spec = TokenSpec::from_token(name, role, department, &token);
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = Entry::new(spec, Source::Issued).map_err(|e| match e {
            ApiError::Config(m) => Refusal::Invalid(m),
            other => Refusal::Invalid(other.to_string()),
        })?;
        let mut entries = self.snapshot().as_ref().clone();
        if entries.iter().any(|e| e.spec.name == entry.spec.name) {
            return Err(Refusal::Exists(entry.spec.name));
        }
        entries.push(entry);
        self.persist(&entries).map_err(Refusal::Failed)?;
        self.replace(entries);
        Ok(token)
    }

    /// Deletes an issued token.
    fn revoke(&self, name: &str) -> Result<(), Refusal> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut entries = self.snapshot().as_ref().clone();
        let Some(at) = entries.iter().position(|e| e.spec.name == name) else {
            return Err(Refusal::Missing(name.to_owned()));
        };
        if entries[at].source == Source::Config {
            return Err(Refusal::Configured(name.to_owned()));
        }
        entries.remove(at);
        self.persist(&entries).map_err(Refusal::Failed)?;
        self.replace(entries);
        Ok(())
    }

    /// Rewrites the tokens file (if any) with the issued tokens of `entries`.
    fn persist(&self, entries: &[Entry]) -> Result<(), ApiError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let file = TokensFile {
            tokens: entries
                .iter()
                .filter(|e| e.source == Source::Issued)
                .map(|e| e.spec.clone())
                .collect(),
        };
        write_file(path, &file).map_err(|reason| ApiError::TokensFile {
            path: path.clone(),
            reason,
        })
    }
}

/// The tokens of `path`; none if it does not exist yet.
fn load_file(path: &FsPath) -> Result<Vec<TokenSpec>, ApiError> {
    let error = |reason: String| ApiError::TokensFile {
        path: path.to_owned(),
        reason,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(error(e.to_string())),
    };
    let file: TokensFile = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
    Ok(file.tokens)
}

/// Writes `file` to a temporary file beside `path`, then renames it over `path`.
fn write_file(path: &FsPath, file: &TokensFile) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(file).map_err(|e| e.to_string())?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    Ok(())
}

/// Why a request was refused, the `reason` of `ioc_api_auth_failures_total`.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Missing,
    Unknown,
    Forbidden,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Unknown => "unknown",
            Failure::Forbidden => "forbidden",
        }
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn is_write(method: &Method) -> bool {
    method == Method::POST || method == Method::PUT || method == Method::DELETE
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The `token` query parameter.
fn query_token(uri: &Uri) -> Option<String> {
    let Query(params) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    params.get("token").filter(|t| !t.is_empty()).cloned()
}

/// Whether `role` may send `method` to `path` (see the crate docs).
fn permits(role: Role, method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let api = match segments.as_slice() {
        ["api", "v1", rest @ ..] => Some(rest),
        _ => None,
    };
    if let Some(["tokens", ..]) = api {
        return role == Role::Admin;
    }
    let read = is_read(method);
    let post = method == Method::POST;
    match role {
        Role::Admin => true,
        Role::Analyst => read,
        Role::Operator => {
            read || match api {
                Some(["alerts", _, "acknowledge" | "resolve" | "comments"]) => post,
                Some(["devices" | "rules", ..]) => is_write(method),
                _ => false,
            }
        }
        Role::Department => match api {
            None => read && segments.as_slice() == ["ws"],
            Some(rest) => match rest {
                ["alerts", _, "acknowledge" | "resolve" | "comments"] => read || post,
                ["deliveries", _, "redeliver"] => read || post,
                ["subscriptions", ..] => read || is_write(method),
                ["alerts" | "devices" | "rules" | "webhooks" | "deliveries" | "kpis" | "health", ..] => {
                    read
                }
                _ => false,
            },
        },
    }
}

/// What `role` may do, for 403 messages.
fn may_do(role: Role) -> &'static str {
    match role {
        Role::Admin => "do everything",
        Role::Analyst => "only read (GET); tokens are for admins",
        Role::Operator => {
            "read everything, act on alerts (acknowledge, resolve, comment) and change devices \
             and rules; not subscriptions, deliveries or tokens"
        }
        Role::Department => {
            "use the WebSocket, read alerts, devices, rules, webhooks, deliveries, KPIs and health, act on \
             alerts, manage subscriptions and redeliver deliveries"
        }
    }
}

fn refuse(state: &ApiState, failure: Failure, message: String) -> Response {
    state
        .metrics()
        .auth_failures
        .with_label_values(&[failure.as_str()])
        .inc();
    match failure {
        Failure::Missing | Failure::Unknown => {
            let mut response =
                RestError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Failure::Forbidden => {
            RestError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response()
        }
    }
}

/// Answers 401 to a request without a known token and 403 to one its role may not make;
/// otherwise puts the caller's [`Principal`] in the request's extensions.
pub(crate) async fn authorize(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let tokens = state.tokens();
    if !tokens.enabled {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let read = is_read(&method);
    if read
        && (path == "/healthz"
            || path == "/openapi.json"
            || (path == "/metrics" && tokens.metrics_public)
            || crate::page::is_public(&path))
    {
        return next.run(request).await;
    }
    let token = bearer(request.headers()).or_else(|| {
        (read && path == "/ws")
            .then(|| query_token(request.uri()))
            .flatten()
    });
    let Some(token) = token else {
        return refuse(
            &state,
            Failure::Missing,
            "this route needs a token: send `Authorization: Bearer <token>`".to_owned(),
        );
    };
    let Some(principal) = tokens.lookup(&token) else {
        return refuse(&state, Failure::Unknown, "unknown token".to_owned());
    };
    if !permits(principal.role, &method, &path) {
        let role = principal.role.as_str();
        return refuse(
            &state,
            Failure::Forbidden,
            format!(
                "the {role} role may {}: `{method} {path}` is not allowed to token `{}`",
                may_do(principal.role),
                principal.name
            ),
        );
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueRequest {
    /// Who the token is for: 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `@`; unique.
    name: String,
    /// What it may do.
    role: Role,
    /// The department, required for (and only for) the `department` role.
    #[serde(default)]
    department: Option<Department>,
}

impl ApiBody for IssueRequest {
    const INVALID: &'static str = "invalid_token_request";
    const WHAT: &'static str = "token request";
}

/// A token as the API shows it: never its hash.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TokenView {
    /// Who holds it.
    name: String,
    /// What it may do.
    role: Role,
    /// Its department (department role only).
    department: Option<Department>,
    /// `config` (configured, cannot be deleted here) or `issued` (through this API).
    source: Source,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TokenList {
    /// Every token, by name.
    tokens: Vec<TokenView>,
    /// `tokens.len()`.
    count: usize,
}

/// A token just issued: the only time it is shown.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Issued {
    /// Who holds it.
    name: String,
    /// What it may do.
    role: Role,
    /// Its department (department role only).
    department: Option<Department>,
    /// The token: send it as `Authorization: Bearer <token>`.
    token: String,
}

fn refusal(refusal: Refusal) -> RestError {
    match refusal {
        Refusal::Invalid(m) => RestError::new(StatusCode::BAD_REQUEST, "invalid_token_request", m),
        Refusal::Exists(name) => RestError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a token named `{name}` exists; delete it first"),
        ),
        Refusal::Missing(name) => RestError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no token `{name}`"),
        ),
        Refusal::Configured(name) => RestError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("token `{name}` comes from the configuration; remove it there"),
        ),
        Refusal::Failed(e) => {
            warn!(error = %e, "token change failed");
            RestError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the token change failed: {e}"),
            )
        }
    }
}

fn actor(principal: Option<&Extension<Principal>>) -> &str {
    principal.map_or("anonymous", |Extension(p)| p.name.as_str())
}

async fn issue(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    JsonBody(request): JsonBody<IssueRequest>,
) -> Result<Response, RestError> {
    let IssueRequest {
        name,
        role,
        department,
    } = request;
    let token = state
        .tokens()
        .issue(name.clone(), role, department)
        .map_err(refusal)?;
    info!(
        name,
        role = role.as_str(),
        by = actor(principal.as_ref()),
        "token issued"
    );
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(Issued {
            name,
            role,
            department,
            token,
        }),
    )
        .into_response())
}

async fn list(State(state): State<ApiState>) -> Json<TokenList> {
    let tokens: Vec<TokenView> = state
        .tokens()
        .snapshot()
        .iter()
        .map(|e| TokenView {
            name: e.spec.name.clone(),
            role: e.spec.role,
            department: e.spec.department,
            source: e.source,
        })
        .collect();
    Json(TokenList {
        count: tokens.len(),
        tokens,
    })
}

async fn revoke(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, RestError> {
    let Path(name) =
        name.map_err(|e| RestError::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text()))?;
    state.tokens().revoke(&name).map_err(refusal)?;
    info!(name, by = actor(principal.as_ref()), "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The token API; `router` adds it.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/tokens", get(list).post(issue))
        .route("/api/v1/tokens/{name}", delete(revoke))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_generates() {
        assert_eq!(
            hash_token(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert!(a.starts_with("ioc_") && a.len() == 4 + 43, "{a}");
        assert_ne!(a, b);
        assert_eq!(parse_hex(&hash_token("x")), Some(digest_of("x")));
        assert_eq!(parse_hex("zz"), None);
    }

    #[test]
    fn the_role_matrix() {
        use Role::{Admin, Analyst, Department as Dept, Operator};
        let (get, post, put, del) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
        let cases: &[(Role, &Method, &str, bool)] = &[
            (Admin, &del, "/api/v1/tokens/x", true),
            (Admin, &post, "/api/v1/anything", true),
            (Analyst, &get, "/ws", true),
            (Analyst, &get, "/api/v1/subscriptions", true),
            (Analyst, &get, "/api/v1/tokens", false),
            (Analyst, &post, "/api/v1/alerts/a/acknowledge", false),
            (Operator, &get, "/api/v1/deliveries", true),
            (Operator, &get, "/api/v1/tokens", false),
            (Operator, &post, "/api/v1/alerts/a/resolve", true),
            (Operator, &post, "/api/v1/alerts/a/comments", true),
            (Operator, &post, "/api/v1/alerts/a/other", false),
            (Operator, &put, "/api/v1/devices/d", true),
            (Operator, &del, "/api/v1/rules/r", true),
            (Operator, &post, "/api/v1/subscriptions", false),
            (Operator, &post, "/api/v1/deliveries/x/redeliver", false),
            (Operator, &post, "/api/v1/tokens", false),
            (Dept, &get, "/ws", true),
            (Dept, &get, "/metrics", false),
            (Dept, &get, "/api/v1/alerts", true),
            (Dept, &get, "/api/v1/devices/unknown", true),
            (Dept, &get, "/api/v1/rules/r", true),
            (Dept, &get, "/api/v1/webhooks/deliveries", true),
            (Dept, &get, "/api/v1/tokens", false),
            (Dept, &get, "/api/v1/kpis/air", true),
            (Dept, &get, "/api/v1/health", true),
            (Analyst, &get, "/api/v1/kpis/traffic", true),
            (Dept, &get, "/api/v1/other", false),
            (Dept, &post, "/api/v1/alerts/a/acknowledge", true),
            (Dept, &post, "/api/v1/devices", false),
            (Dept, &put, "/api/v1/subscriptions/s", true),
            (Dept, &del, "/api/v1/subscriptions/s", true),
            (Dept, &post, "/api/v1/deliveries/x/redeliver", true),
            (Dept, &del, "/api/v1/deliveries/x", false),
            (Dept, &put, "/api/v1/rules/r", false),
        ];
        for (role, method, path, allowed) in cases {
            assert_eq!(
                permits(*role, method, path),
                *allowed,
                "{role:?} {method} {path}"
            );
        }
    }

    #[test]
    fn bearer_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        let uri: Uri = "/ws?x=1&token=t%2B1".parse().unwrap();
        assert_eq!(query_token(&uri).as_deref(), Some("t+1"));
    }
}
