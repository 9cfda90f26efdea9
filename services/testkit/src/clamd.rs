//! A real `clamd` per test, on a free port, with its own signature database.
//!
//! Owns the child process and a temporary directory holding its configuration (rendered from
//! `deploy/clamav/clamd.conf.template`, the same file the dev scripts use), its signature
//! database and its log. The database holds one signature, the EICAR test string ([`EICAR`]),
//! so no internet and no freshclam are needed; clamd reports it as
//! `stream: Eicar-Test-Signature.UNOFFICIAL FOUND`. Limits are the template's (200 MiB per
//! stream). Nothing is shared between tests: each [`Clamd`] has its own port and directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The 68-byte EICAR anti-virus test string: harmless, and detected as malware by every scanner.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The signature of [`EICAR`] in ClamAV's `.hdb` format (`md5:size:name`).
const EICAR_SIGNATURE: &str = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n";
/// The dev/test clamd configuration; `@DIR@` and `@PORT@` are filled in per instance.
const CONFIG_TEMPLATE: &str = include_str!("../../../deploy/clamav/clamd.conf.template");
/// How long clamd may take to load its database and answer `PING` (generous for loaded CI).
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// Pause between readiness probes (polling a condition, not a synchronisation sleep).
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// Upper bound for one `PING` round trip.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `config` with each overridden directive's line replaced, or appended when absent (clamd
/// refuses a directive given twice).
fn render_config(config: &str, overrides: &[(String, String)]) -> String {
    let mut lines: Vec<String> = config.lines().map(str::to_owned).collect();
    for (name, value) in overrides {
        let line = format!("{name} {value}");
        match lines
            .iter_mut()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        {
            Some(existing) => *existing = line,
            None => lines.push(line),
        }
    }
    lines.join("\n") + "\n"
}

/// A running `clamd` owned by one test; killed when dropped.
pub struct Clamd {
    /// TCP address, `127.0.0.1:<port>` (what `FE_CLAMD_ADDR` takes).
    pub addr: String,
    /// The port (kept across [`Clamd::restart`]).
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
    binary: PathBuf,
    /// Directives replacing (or added to) the template's, e.g. `("MaxRecursion", "2")`.
    overrides: Vec<(String, String)>,
}

impl Clamd {
    /// Starts clamd on a free port with its own directory; ready (answers `PING`) when it returns.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Like [`Clamd::start`] with some directives of the template replaced (or added), e.g. a
    /// low `MaxRecursion` to test what happens past clamd's limits.
    pub async fn start_with(overrides: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = TempDir::new().context("creating a directory for clamd")?;
        for sub in ["db", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub))
                .with_context(|| format!("creating clamd's {sub} directory"))?;
        }
        std::fs::write(dir.path().join("db/test.hdb"), EICAR_SIGNATURE)
            .context("writing clamd's signature database")?;
        let clamd = Clamd {
            addr: String::new(),
            port: 0,
            child: None,
            dir,
            binary: clamd_binary(),
            overrides: overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        crate::process::start_on_a_free_port(clamd, "clamd").await
    }

    /// Kills clamd (SIGKILL) and waits for it to exit: the scanner sees it vanish.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Err means it already exited; either way it is gone after this.
            let _ = child.kill().await;
        }
    }

    /// Starts clamd again on the same port with the same database; ready when it returns.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.spawn_and_wait().await
    }

    /// True when clamd answers `PING` with `PONG` right now.
    pub async fn answers_ping(&self) -> bool {
        ping(&self.addr).await
    }

    /// The directory holding clamd's configuration, database and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.path();
        let config = render_config(
            &CONFIG_TEMPLATE
                .replace("@DIR@", &dir.display().to_string())
                .replace("@PORT@", &self.port.to_string()),
            &self.overrides,
        );
        let config_path = dir.join("clamd.conf");
        std::fs::write(&config_path, config).context("writing clamd.conf")?;
        let stderr = std::fs::File::create(dir.join("clamd.stderr"))
            .context("creating clamd's stderr log")?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {} (install clamav-daemon or set FE_TEST_CLAMD)",
                    self.binary.display()
                )
            })?;
        self.child = Some(child);
        self.wait_ready().await
    }

    /// Polls until clamd answers `PING`, it exits, or the deadline passes.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("polling clamd")? {
                    bail!(
                        "clamd exited with {status} before it was ready: {}",
                        self.log_tail()
                    );
                }
            }
            if ping(&self.addr).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "clamd on {} not ready within {READY_DEADLINE:?}: {}",
                    self.addr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// The last lines of clamd's log and stderr, for error messages.
    fn log_tail(&self) -> String {
        ["clamd.log", "clamd.stderr"]
            .iter()
            .map(|file| {
                let text = std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(10)..].join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl crate::process::Spawned for Clamd {
    fn use_port(&mut self, port: u16) {
        self.port = port;
        self.addr = format!("127.0.0.1:{port}");
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        Clamd::spawn_and_wait(self).await
    }

    async fn stop(&mut self) {
        Clamd::stop(self).await
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // kill_on_drop would do the same; being explicit keeps the intent visible.
            let _ = child.start_kill();
        }
    }
}

/// The clamd binary tests use: `$FE_TEST_CLAMD`, else `clamd` on `PATH`, else Debian's
/// `/usr/sbin/clamd` (package clamav-daemon).
pub fn clamd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FE_TEST_CLAMD").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("clamd"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/clamd"))
}

/// `zPING` → `PONG` on `addr`, bounded by [`PING_TIMEOUT`].
async fn ping(addr: &str) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"zPING\0").await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    matches!(
        tokio::time::timeout(PING_TIMEOUT, exchange).await,
        Ok(Ok(reply)) if reply.strip_suffix(b"\0") == Some(b"PONG")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eicar_is_the_68_byte_standard_string() {
        assert_eq!(EICAR.len(), 68);
        assert!(EICAR.starts_with(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"));
        assert!(EICAR_SIGNATURE.contains(":68:"));
    }

    #[test]
    fn the_template_has_every_placeholder_we_fill() {
        for needle in [
            "@DIR@/db",
            "@DIR@/tmp",
            "TCPSocket @PORT@",
            "TCPAddr 127.0.0.1",
            "Foreground yes",
        ] {
            assert!(CONFIG_TEMPLATE.contains(needle), "{needle}");
        }
    }
}
