//! A private PostgreSQL server per test, for scenarios that must crash and restart the
//! database: the machine's shared server on 5432 is never restarted.
//!
//! `initdb` + `pg_ctl` of the newest `/usr/lib/postgresql/<version>/bin` create a cluster in a
//! temporary directory (trust authentication, loopback only, its own port and socket
//! directory). PostgreSQL refuses to run as root, so as root the commands run as the `postgres`
//! user through `runuser`, and the directory is handed to that user. [`PgCluster::crash`] is
//! `pg_ctl stop -m immediate` (no checkpoint: recovery replays the WAL on the next start, as
//! after a power cut); [`PgCluster::start`] brings the same data directory back.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use tempfile::TempDir;

/// A private PostgreSQL server; stopped (immediately) when dropped.
pub struct PgCluster {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    bin: PathBuf,
    dir: TempDir,
    run_as_postgres: bool,
    running: bool,
}

impl PgCluster {
    /// Creates a cluster in a fresh directory and starts it on a free port.
    pub async fn start_new() -> anyhow::Result<Self> {
        let bin = postgres_bin()?;
        let dir = TempDir::new().context("creating a directory for PostgreSQL")?;
        let run_as_postgres = is_root();
        let mut cluster = PgCluster {
            port: crate::process::free_port()?,
            bin,
            dir,
            run_as_postgres,
            running: false,
        };
        if run_as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(cluster.dir.path())
                .status()
                .context("chown of the PostgreSQL directory")?;
            if !status.success() {
                bail!("chown to postgres failed (is there a postgres user?)");
            }
        }
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().context("data path")?,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        cluster.start().await?;
        Ok(cluster)
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let admin = sqlx::PgPool::connect(&self.url("postgres"))
            .await
            .context("connecting to the private PostgreSQL")?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        admin.close().await;
        Ok(self.url(name))
    }

    /// Starts the server (again) over its data directory; returns once it accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let (data, socket, log) = (self.data_dir(), self.dir.path().to_owned(), self.log_path());
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200",
            self.port,
            socket.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().context("data path")?,
                "-l",
                log.to_str().context("log path")?,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .with_context(|| format!("starting PostgreSQL: {}", self.log_tail()))?;
        self.running = true;
        Ok(())
    }

    /// Stops the server without a checkpoint (`-m immediate`): a crash from the clients' view.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().context("data path")?,
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )?;
        self.running = false;
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let output = if self.run_as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .current_dir(self.dir.path())
                .output()
        } else {
            Command::new(&path).args(args).output()
        }
        .with_context(|| format!("running {}", path.display()))?;
        if !output.status.success() {
            bail!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.crash();
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(base)
        .context("listing /usr/lib/postgresql (is the postgresql package installed?)")?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL server binaries (initdb) under /usr/lib/postgresql")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
