//! Helpers shared by the integration tests: a server on 127.0.0.1:0, a bare HTTP/1.1 client
//! and a WebSocket client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use ioc_dashboard_api::{serve_with, ApiError, ApiState, HttpConfig};
use ioc_schemas::{District, Kind, WindowResult};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub state: ApiState,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), ApiError>>,
}

/// The default configuration with access control off (what most tests want).
pub fn open_config() -> HttpConfig {
    let mut config = HttpConfig::default();
    config.auth.enabled = false;
    config
}

impl Server {
    /// Starts a server with `config` (its `listen` is ignored: port 0 is used), with access
    /// control off whatever `config.auth` says; see [`Server::start_with_auth`].
    pub async fn start(mut config: HttpConfig) -> anyhow::Result<Server> {
        config.auth.enabled = false;
        Server::start_with_auth(config).await
    }

    /// Starts a server with `config` as it is, access control included.
    pub async fn start_with_auth(config: HttpConfig) -> anyhow::Result<Server> {
        Server::serve_state(ApiState::new(&config, prometheus::Registry::new())?).await
    }

    /// Serves `state` on 127.0.0.1:0.
    pub async fn serve_state(state: ApiState) -> anyhow::Result<Server> {
        Server::serve_state_with(state, axum::Router::new()).await
    }

    /// Serves `state` and `extra` routes (see `serve_with`) on 127.0.0.1:0.
    pub async fn serve_state_with(state: ApiState, extra: axum::Router) -> anyhow::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(listener, state.clone(), extra, async move {
            let _ = stopped.await;
        }));
        Ok(Server {
            addr,
            state,
            stop: Some(stop),
            task,
        })
    }

    /// Stops the server and waits for `serve` to return.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .context("serve did not return after shutdown")???;
        Ok(())
    }

    /// Opens `/ws` and reads the hello.
    pub async fn ws(&self) -> anyhow::Result<Ws> {
        let (mut ws, response) =
            tokio_tungstenite::connect_async(format!("ws://{}/ws", self.addr)).await?;
        assert_eq!(response.status().as_u16(), 101);
        let hello = next_json(&mut ws).await?;
        assert_eq!(
            hello,
            serde_json::json!({"type": "hello", "protocol": 2, "channels": [
                "windows", "kpi.traffic", "kpi.camera", "kpi.air", "kpi.water",
                "kpi.hydrology", "kpi.bridge", "kpi.health", "alerts", "dead_letters"
            ]})
        );
        Ok(ws)
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("body is not json: {}", self.body))
    }
}

/// `GET path` over a fresh connection, HTTP/1.1, `Connection: close`.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    http_request(addr, "GET", path, &[], None).await
}

/// `method path` with a JSON body (`content-type: application/json`).
pub async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<Response> {
    http_request(
        addr,
        method,
        path,
        &[("content-type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
    .await
}

/// Any request over a fresh connection, HTTP/1.1, `Connection: close`.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> anyhow::Result<Response> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if let Some(body) = body {
        // A server refusing a large body may close before reading it all.
        let _ = stream.write_all(body).await;
    }
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await??;
    let raw = String::from_utf8(raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {raw:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: body.to_owned(),
    };
    if response.header("transfer-encoding") == Some("chunked") {
        response.body = dechunk(body)?;
    }
    Ok(response)
}

fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("short chunk")?);
        body = rest.get(size + 2..).context("short chunk")?;
    }
}

/// The next text message as JSON, skipping Ping/Pong frames; fails after 5 s.
pub async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    next_json_within(ws, Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow!("no message within 5 s"))
}

/// The next text message as JSON, or `None` if none arrives within `wait`.
pub async fn next_json_within(ws: &mut Ws, wait: Duration) -> anyhow::Result<Option<Value>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, ws.next()).await else {
            return Ok(None);
        };
        match next {
            None => bail!("socket closed"),
            Some(Err(e)) => bail!("socket error: {e}"),
            Some(Ok(Message::Text(text))) => return Ok(Some(serde_json::from_str(text.as_str())?)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => bail!("unexpected frame {other:?}"),
        }
    }
}

/// Reads the `snapshot` that follows every `subscribed` carrying a filter.
pub async fn expect_snapshot(ws: &mut Ws) -> anyhow::Result<Value> {
    let snapshot = next_json(ws).await?;
    if snapshot["type"] != "snapshot" {
        bail!("expected a snapshot, got {snapshot}");
    }
    Ok(snapshot)
}

/// Sends `value` as a text frame.
pub async fn send_json(ws: &mut Ws, value: Value) -> anyhow::Result<()> {
    ws.send(Message::text(value.to_string())).await?;
    Ok(())
}

/// A window result; `n` distinguishes results (it is the count).
pub fn result(district: District, device: &str, n: u64) -> WindowResult {
    WindowResult {
        kind: Kind::TrafficSignal,
        district,
        device_id: device.to_owned(),
        metric: "vehicles".to_owned(),
        window_start_ms: 1_795_827_600_000,
        window_size_ms: 60_000,
        count: n,
        sum: n as f64,
        min: 1.0,
        max: 1.0,
        mean: 1.0,
        emitted_at_ms: 1_795_827_661_000,
        version: 3,
        is_final: true,
    }
}

/// Asserts `message` is a window with count `n` and returns its device.
pub fn window_count(message: &Value) -> u64 {
    assert_eq!(message["type"], "window", "{message}");
    message["data"]["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count in {message}"))
}
