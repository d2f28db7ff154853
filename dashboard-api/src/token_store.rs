//! The tokens the server knows: configured ones, those issued through the token API (kept
//! in the tokens file) and those added by the process, each known by its hash.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ioc_schemas::{Department, Principal, Role};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::config::{AuthConfig, TokenSpec};
use crate::error::ApiError;
use crate::token::{constant_time_eq, digest_of, generate_token, parse_hex};

/// Where a token comes from: the configuration (or
/// [`ApiState::add_token`](crate::ApiState::add_token)), which the API
/// cannot delete, or the token API, which keeps it in the tokens file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    Config,
    Issued,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) spec: TokenSpec,
    hash: [u8; 32],
    pub(crate) source: Source,
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
pub(crate) enum Refusal {
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
    pub(crate) metrics_public: bool,
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

    pub(crate) fn snapshot(&self) -> Arc<Vec<Entry>> {
        Arc::clone(&self.entries.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn replace(&self, entries: Vec<Entry>) {
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(entries);
    }

    /// The principal of `token`, comparing its hash with every known one in constant time.
    pub(crate) fn lookup(&self, token: &str) -> Option<Principal> {
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
    pub(crate) fn issue(
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
    pub(crate) fn revoke(&self, name: &str) -> Result<(), Refusal> {
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
        write_file(path, &file)
    }
}

fn io_error(path: &FsPath) -> impl FnOnce(std::io::Error) -> ApiError + '_ {
    |source| ApiError::TokensFileIo {
        path: path.to_owned(),
        source,
    }
}

fn json_error(path: &FsPath) -> impl FnOnce(serde_json::Error) -> ApiError + '_ {
    |source| ApiError::TokensFileJson {
        path: path.to_owned(),
        source,
    }
}

/// The tokens of `path`; none if it does not exist yet.
fn load_file(path: &FsPath) -> Result<Vec<TokenSpec>, ApiError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path)(e)),
    };
    let file: TokensFile = serde_json::from_str(&text).map_err(json_error(path))?;
    Ok(file.tokens)
}

/// Writes `file` to a temporary file beside `path`, then renames it over `path`.
fn write_file(path: &FsPath, file: &TokensFile) -> Result<(), ApiError> {
    let json = serde_json::to_vec_pretty(file).map_err(json_error(path))?;
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
        return Err(io_error(path)(e));
    }
    Ok(())
}
