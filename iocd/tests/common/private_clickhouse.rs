//! A clickhouse-server of one test only, on free loopback ports, with its data in the test's
//! folder, so the test can stop and restart it (an outage) without touching the shared one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::free_port;

/// A clickhouse-server of this test only, listening on free loopback ports, with its data in
/// the test's temp dir so that a restart finds what was stored before.
pub struct PrivateClickHouse {
    config: PathBuf,
    out: PathBuf,
    http_port: u16,
    child: Option<Child>,
}

impl PrivateClickHouse {
    /// Writes the config: the suite's own (.ci/servers) with its paths under `dir` and its
    /// two ports replaced by free ones.
    pub fn new(dir: &Path) -> PrivateClickHouse {
        let servers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/servers");
        let template = std::fs::read_to_string(servers.join("clickhouse-config.xml")).unwrap();
        // 18.16 opens only the ports its config names (no interserver port unless
        // `interserver_http_port` is set): make sure the template names just these two, so
        // this server never collides with the shared one.
        let ports: Vec<&str> = template
            .match_indices("_port>")
            .map(|(i, _)| {
                let start = template[..i].rfind('<').unwrap() + 1;
                &template[start..i + "_port".len()]
            })
            .filter(|tag| !tag.starts_with('/'))
            .collect();
        assert_eq!(
            ports,
            ["http_port", "tcp_port"],
            "the ClickHouse config opens ports this test does not move"
        );
        let root = dir.join("clickhouse");
        for sub in ["data", "tmp", "user_files", "format_schemas"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let http_port = free_port();
        let tcp_port = std::iter::repeat_with(free_port)
            .find(|&p| p != http_port)
            .unwrap();
        let config = template
            .replace("@RUN@", dir.to_str().unwrap())
            .replace("@DATA@", root.join("data").to_str().unwrap())
            .replace(
                "<http_port>8123</http_port>",
                &format!("<http_port>{http_port}</http_port>"),
            )
            .replace(
                "<tcp_port>9000</tcp_port>",
                &format!("<tcp_port>{tcp_port}</tcp_port>"),
            );
        assert!(!config.contains(">8123<") && !config.contains(">9000<"));
        assert!(
            !config.contains('@'),
            "a placeholder of the template left in: {config}"
        );
        let config_path = root.join("config.xml");
        std::fs::write(&config_path, config).unwrap();
        std::fs::copy(servers.join("clickhouse-users.xml"), root.join("users.xml")).unwrap();
        PrivateClickHouse {
            config: config_path,
            out: root.join("server.out"),
            http_port,
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    /// Starts the server and waits until `/ping` answers `Ok.`.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "clickhouse already running");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.out)
            .unwrap();
        let child = Command::new("clickhouse-server")
            .arg(format!("--config-file={}", self.config.display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("clickhouse-server runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, body)) = http_get(self.addr(), "/ping").await {
                if body.trim() == "Ok." {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "clickhouse-server exited with {status}; see {}",
                    self.out.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "clickhouse-server did not answer /ping; see {}",
                self.out.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as a crash would end it, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the process to exit (SIGKILL after 30 s).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                eprintln!("clickhouse-server ignored SIGTERM for 30 s; killing it");
                child.kill().unwrap();
                child.wait().unwrap();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateClickHouse {
    /// A failed assertion must not leave the private server running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET path` over plain HTTP/1.1; `None` when nothing listens or the answer is cut short.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let status = response.get(9..12)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}
