//! Processes of the `file-engine` binary, one role each, that a test can kill with SIGKILL and
//! start again: what a crashed pod looks like to the rest of the platform.
//!
//! The binary path comes from the test (`env!("CARGO_BIN_EXE_file-engine")`); the environment
//! is the complete `FE_*` configuration of the process. Output goes to a log file per process
//! (JSON lines), kept in a scratch directory and quoted by [`RoleProcess::log_tail`] when a
//! scenario fails.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tempfile::TempDir;

/// One running (or killed) `file-engine <role>` process.
pub struct RoleProcess {
    binary: PathBuf,
    role: String,
    env: HashMap<String, String>,
    child: Option<Child>,
    scratch: TempDir,
    /// How many times this process was started.
    pub starts: usize,
}

impl RoleProcess {
    /// Spawns `binary <role>` with exactly `env` as its `FE_*` configuration.
    pub fn spawn(
        binary: impl Into<PathBuf>,
        role: &str,
        env: HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut process = RoleProcess {
            binary: binary.into(),
            role: role.to_owned(),
            env,
            child: None,
            scratch: TempDir::new().context("creating a scratch directory for a role")?,
            starts: 0,
        };
        process.start()?;
        Ok(process)
    }

    /// The role this process runs.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Its operating-system process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL (no shutdown, no drain) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same configuration (after [`RoleProcess::kill`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last `lines` lines of the process' output (all its starts).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.scratch.path().join(format!("{}.log", self.role))
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening a role log")?;
        let err = log.try_clone().context("sharing a role log")?;
        let child = Command::new(&self.binary)
            .arg(&self.role)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {} {}", self.binary.display(), self.role))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `GET <base>/readyz` until it answers 200 (the API reaches NATS, PostgreSQL and the
/// stream), or fails after `deadline`.
pub async fn wait_ready(base: &str, deadline: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + deadline;
    let url = format!("{base}/readyz");
    loop {
        if let Ok(Ok(status)) =
            tokio::time::timeout(Duration::from_secs(2), http_status(&url)).await
        {
            if status == 200 {
                return Ok(());
            }
        }
        if Instant::now() >= end {
            bail!("{url} not ready within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status code of a plain `GET` over HTTP/1.1 (no client library needed for a probe).
async fn http_status(url: &str) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url.strip_prefix("http://").context("http:// only")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no status line")
}
