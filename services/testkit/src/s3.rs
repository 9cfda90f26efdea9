//! A real S3-compatible server (moto) per test, on a free port, with a fresh bucket per
//! [`S3Server::create_bucket`] call.
//!
//! moto's server (`moto_server`, PyPI `moto[server]`, installed into `.tools/venv` by
//! `deploy/dev/lib.sh`) keeps everything in memory and accepts any credentials, so nothing is
//! shared between tests and nothing is left on disk. It implements what the S3 storage
//! backend uses: put, ranged get, head, multipart uploads (list and abort too), copy, delete,
//! list, and `If-None-Match: *` on PUT (412 when the key exists).
//!
//! The helper speaks plain HTTP to the server (readiness probe and bucket creation are two
//! unsigned requests moto accepts), so the test kit needs no S3 client of its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long moto may take to import itself and answer (about a second on an idle machine;
/// generous for a loaded CI runner).
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// Pause between readiness probes (polling a condition, not a synchronisation sleep).
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// Upper bound for one HTTP exchange with the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Credentials moto accepts (it accepts any); what tests give the S3 client.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";
/// The region buckets are created in.
pub const REGION: &str = "us-east-1";

/// A running `moto_server` owned by one test; killed when dropped.
pub struct S3Server {
    /// Base URL, `http://127.0.0.1:<port>` (what `FE_S3_ENDPOINT` takes).
    pub endpoint: String,
    pub port: u16,
    child: Option<Child>,
    scratch: TempDir,
    binary: PathBuf,
}

impl S3Server {
    /// Starts moto on a free port; ready (answers a bucket listing) when it returns.
    pub async fn start() -> anyhow::Result<Self> {
        let scratch = TempDir::new().context("creating a scratch directory for moto_server")?;
        let server = S3Server {
            endpoint: String::new(),
            port: 0,
            child: None,
            scratch,
            binary: moto_binary(),
        };
        crate::process::start_on_a_free_port(server, "moto_server").await
    }

    /// Creates a bucket with a fresh name and returns the name.
    pub async fn create_bucket(&self) -> anyhow::Result<String> {
        let name = format!(
            "fe-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let status = http_status(self.port, "PUT", &format!("/{name}")).await?;
        if status != 200 {
            bail!("creating bucket {name} answered HTTP {status}");
        }
        Ok(name)
    }

    /// Kills the server (SIGKILL) and waits for it to exit; its buckets are gone with it.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Err means it already exited; either way it is gone after this.
            let _ = child.kill().await;
        }
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let log_path = self.scratch.path().join("moto_server.log");
        let log = std::fs::File::create(&log_path).context("creating the moto_server log")?;
        let child = Command::new(&self.binary)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {} (run deploy/dev/setup.sh or set FE_TEST_MOTO)",
                    self.binary.display()
                )
            })?;
        self.child = Some(child);
        self.wait_ready(&log_path).await
    }

    /// Polls until the server answers `GET /` (the bucket listing), it exits, or the deadline
    /// passes.
    async fn wait_ready(&mut self, log_path: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("polling moto_server")? {
                    bail!(
                        "moto_server exited with {status} before it was ready: {}",
                        log_tail(log_path)
                    );
                }
            }
            if matches!(http_status(self.port, "GET", "/").await, Ok(200)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "moto_server on port {} not ready within {READY_DEADLINE:?}: {}",
                    self.port,
                    log_tail(log_path)
                );
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

impl crate::process::Spawned for S3Server {
    fn use_port(&mut self, port: u16) {
        self.port = port;
        self.endpoint = format!("http://127.0.0.1:{port}");
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        S3Server::spawn_and_wait(self).await
    }

    async fn stop(&mut self) {
        S3Server::stop(self).await
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // kill_on_drop would do the same; being explicit keeps the intent visible.
            let _ = child.start_kill();
        }
    }
}

/// The moto server binary tests use: `$FE_TEST_MOTO`, else the workspace's
/// `.tools/venv/bin/moto_server`, else `moto_server` on `PATH`.
pub fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FE_TEST_MOTO").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    // services/testkit → the workspace root.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    let venv = workspace.join(".tools/venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("moto_server")
}

/// One bodyless HTTP/1.1 request to `127.0.0.1:port`; returns the status code.
async fn http_status(port: u16, method: &str, path: &str) -> anyhow::Result<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .context("moto_server did not answer in time")?
        .context("talking to moto_server")?;
    // `HTTP/1.1 200 OK`
    let status_line = reply.split(|b| *b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(status_line)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("moto_server answered something that is not HTTP")
}

/// The last lines of the server's log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn started_server_creates_distinct_buckets_and_dies_with_its_owner() {
        let mut server = S3Server::start().await.unwrap();
        let a = server.create_bucket().await.unwrap();
        let b = server.create_bucket().await.unwrap();
        assert_ne!(a, b);
        assert_eq!(
            http_status(server.port, "HEAD", &format!("/{a}"))
                .await
                .unwrap(),
            200
        );
        assert_eq!(
            http_status(server.port, "HEAD", "/no-such-bucket")
                .await
                .unwrap(),
            404
        );
        server.stop().await;
        assert!(http_status(server.port, "GET", "/").await.is_err());
    }
}
