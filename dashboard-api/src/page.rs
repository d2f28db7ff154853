//! The operator page at `/`: HTML, script, styles and the map and chart libraries, all
//! compiled into the binary so the page works on a control-room network with no internet.
//!
//! Every file answers with a strong `ETag` (the start of its SHA-256) and honours
//! `If-None-Match` with `304`. The page's own files are `Cache-Control: no-cache` (the
//! browser revalidates, so a new binary's page is used at once); the vendored libraries are
//! cached for a day.

use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ioc_schemas::api_error::ApiError as HttpError;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::state::ApiState;

/// One bundled file: its path under `/assets/`, content type, caching and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    cache_control: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";
const TEXT: &str = "text/plain; charset=utf-8";
/// The page's own files: revalidated on every load (cheap with the ETag).
const APP: &str = "no-cache";
/// Vendored files change only with their version.
const VENDOR: &str = "public, max-age=86400";

const INDEX_HTML: &[u8] = include_bytes!("../assets/index.html");

/// Limits what the page may load and where it may be framed. Images are open to any
/// http(s) host because the map tile server is configurable (`http.dashboard.tile_url`).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: http: https:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

macro_rules! asset {
    ($path:literal, $content_type:expr, $cache:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            cache_control: $cache,
            bytes: include_bytes!(concat!("../assets/", $path)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("app.js", JS, APP),
    asset!("i18n.js", JS, APP),
    asset!("live.js", JS, APP),
    asset!("map.js", JS, APP),
    asset!("charts.js", JS, APP),
    asset!("app.css", CSS, APP),
    asset!("favicon.svg", SVG, APP),
    asset!("vendor/leaflet/leaflet.js", JS, VENDOR),
    asset!("vendor/leaflet/leaflet.css", CSS, VENDOR),
    asset!("vendor/leaflet/LICENSE", TEXT, VENDOR),
    asset!("vendor/uplot/uPlot.iife.min.js", JS, VENDOR),
    asset!("vendor/uplot/uPlot.min.css", CSS, VENDOR),
    asset!("vendor/uplot/LICENSE", TEXT, VENDOR),
];

/// The ETag of `index.html`, then of each asset in `ASSETS` order.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::iter::once(INDEX_HTML)
        .chain(ASSETS.iter().map(|a| a.bytes))
        .map(etag)
        .collect()
});

/// A strong ETag: the first 16 bytes of the SHA-256, in hex and quotes.
fn etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in digest.iter().take(16) {
        let _ = write!(tag, "{byte:02x}");
    }
    tag.push('"');
    tag
}

/// Whether the request's `If-None-Match` already names `tag` (or is `*`).
fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

/// Whether `path` is part of the page, which loads before the operator has given a token
/// (the page holds no data; everything it shows comes from the token-guarded API).
pub(crate) fn is_public(path: &str) -> bool {
    path == "/" || path == "/ui/config.json" || path.starts_with("/assets/")
}

/// What the page reads before it logs in.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct PageConfig<'a> {
    /// Whether the API needs a token (the page asks for one).
    auth: bool,
    /// Map tile URL template; empty: plain background.
    tile_url: &'a str,
    /// Attribution for the tiles.
    tile_attribution: &'a str,
}

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/config.json", get(page_config))
        .route("/assets/{*file}", get(asset))
}

/// The file, or `304` when the client holds this version.
fn file(
    request: &HeaderMap,
    bytes: &'static [u8],
    content_type: &'static str,
    cache_control: &'static str,
    tag: &str,
) -> Response {
    let tag_value = HeaderValue::from_str(tag).unwrap_or(HeaderValue::from_static("\"\""));
    let headers = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
        (header::ETAG, tag_value),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if not_modified(request, tag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        bytes,
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    let mut response = file(
        &headers,
        INDEX_HTML,
        "text/html; charset=utf-8",
        APP,
        &ETAGS[0],
    );
    let extra = response.headers_mut();
    extra.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    extra.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn page_config(State(state): State<ApiState>) -> Response {
    let dashboard = state.dashboard();
    let mut response = Json(PageConfig {
        auth: state.tokens().enabled,
        tile_url: &dashboard.tile_url,
        tile_attribution: &dashboard.tile_attribution,
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.path == path) {
        Some(i) => {
            let a = &ASSETS[i];
            file(
                &headers,
                a.bytes,
                a.content_type,
                a.cache_control,
                &ETAGS[i + 1],
            )
        }
        None => HttpError::new(StatusCode::NOT_FOUND, "not_found", "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HttpConfig;
    use std::collections::BTreeSet;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tracing::Instrument;

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).expect("utf-8")
    }

    /// Every `"/assets/..."` (HTML) or `'./x.js'` (module imports) reference in `source`.
    fn references(source: &str, prefix: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for quote in ['"', '\''] {
            let start = format!("{quote}{prefix}");
            let mut rest = source;
            while let Some(i) = rest.find(&start) {
                rest = &rest[i + start.len()..];
                let end = rest.find(quote).expect("closing quote");
                found.insert(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
        found
    }

    fn served(path: &str) -> Option<&'static Asset> {
        ASSETS.iter().find(|a| a.path == path)
    }

    #[test]
    fn every_file_the_page_references_is_bundled() {
        let html = references(text(INDEX_HTML), "/assets/");
        for must in [
            "app.js",
            "app.css",
            "vendor/leaflet/leaflet.js",
            "vendor/uplot/uPlot.iife.min.js",
            "vendor/uplot/uPlot.min.css",
        ] {
            assert!(html.contains(must), "index.html does not load {must}");
        }
        for path in &html {
            assert!(
                served(path).is_some(),
                "index.html references unbundled /assets/{path}"
            );
        }
        // The ES modules import each other by relative path.
        for a in ASSETS
            .iter()
            .filter(|a| a.content_type == JS && !a.path.contains('/'))
        {
            for import in references(text(a.bytes), "./") {
                assert!(
                    served(&import).is_some(),
                    "{} imports unbundled ./{import}",
                    a.path
                );
            }
        }
    }

    #[test]
    fn every_file_in_the_assets_folder_is_bundled() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("read assets") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    let rel = path.strip_prefix(root).expect("prefix");
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut files = Vec::new();
        walk(&root, &root, &mut files);
        for f in files {
            if f == "index.html" || f == "vendor/README.md" {
                continue;
            }
            assert!(served(&f).is_some(), "assets/{f} is not in ASSETS");
        }
    }

    #[test]
    fn assets_are_unique_typed_and_non_empty() {
        let paths: BTreeSet<_> = ASSETS.iter().map(|a| a.path).collect();
        assert_eq!(paths.len(), ASSETS.len(), "duplicate asset path");
        for a in ASSETS {
            assert!(!a.bytes.is_empty(), "{} is empty", a.path);
            let expected = match a.path.rsplit_once('.').map(|(_, ext)| ext) {
                Some("js") => JS,
                Some("css") => CSS,
                Some("svg") => SVG,
                _ => TEXT,
            };
            assert_eq!(a.content_type, expected, "{}", a.path);
            let vendored = a.path.starts_with("vendor/");
            assert_eq!(a.cache_control == VENDOR, vendored, "{}", a.path);
        }
        assert_eq!(ETAGS.len(), ASSETS.len() + 1);
        assert_ne!(ETAGS[0], ETAGS[1]);
        assert_eq!(ETAGS[0].len(), 34);
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let mut headers = HeaderMap::new();
        assert!(!not_modified(&headers, "\"ab\""));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"ab\""),
        );
        assert!(not_modified(&headers, "\"ab\""));
        assert!(!not_modified(&headers, "\"cd\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&headers, "\"cd\""));
    }

    /// One HTTP/1.1 request; the status, the headers (lowercase names) and the body.
    async fn get(
        addr: std::net::SocketAddr,
        path: &str,
        extra: &str,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, raw[split + 4..].to_vec())
    }

    fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn the_page_is_public_and_the_api_is_not() {
        let mut config = HttpConfig::default();
        config.auth.enabled = true;
        config.dashboard.tile_url = "https://tiles.example/{z}/{x}/{y}.png".to_owned();
        let state = ApiState::new(&config, prometheus::Registry::new()).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            crate::serve(listener, state, async move {
                let _ = stopped.await;
            })
            .instrument(tracing::info_span!("http_api")),
        );

        let (status, headers, body) = get(addr, "/", "").await;
        assert_eq!(status, 200);
        assert_eq!(
            header_of(&headers, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(header_of(&headers, "content-security-policy").is_some());
        assert_eq!(body, INDEX_HTML);

        let (status, _, body) = get(addr, "/ui/config.json", "").await;
        assert_eq!(status, 200);
        let config: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            config,
            serde_json::json!({"auth": true, "tile_url": "https://tiles.example/{z}/{x}/{y}.png",
                "tile_attribution": ""})
        );

        for a in ASSETS {
            let (status, headers, body) = get(addr, &format!("/assets/{}", a.path), "").await;
            assert_eq!(status, 200, "{}", a.path);
            assert_eq!(header_of(&headers, "content-type"), Some(a.content_type));
            assert_eq!(header_of(&headers, "cache-control"), Some(a.cache_control));
            assert_eq!(body, a.bytes, "{}", a.path);
            let tag = header_of(&headers, "etag").expect("etag").to_owned();
            let (status, _, body) = get(
                addr,
                &format!("/assets/{}", a.path),
                &format!("If-None-Match: {tag}\r\n"),
            )
            .await;
            assert_eq!(status, 304, "{}", a.path);
            assert!(body.is_empty());
        }

        for missing in [
            "/assets/nope.js",
            "/assets/vendor/leaflet/leaflet.js.map",
            "/assets/",
        ] {
            let (status, headers, body) = get(addr, missing, "").await;
            assert_eq!(status, 404, "{missing}");
            assert!(header_of(&headers, "content-type")
                .is_some_and(|t| t.starts_with("application/json")));
            let error: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(error["error"]["code"], "not_found", "{missing}");
        }

        // The page's exemption does not open the API.
        let (status, headers, _) = get(addr, "/api/v1/devices", "").await;
        assert_eq!(status, 401);
        assert!(header_of(&headers, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")));

        let _ = stop.send(());
        server.await.expect("join").expect("serve");
    }
}
