//! A 3-node JetStream cluster on loopback ports, each node started from the shipped
//! `nats/cluster-node.conf`, so the fault suite proves the configuration operators deploy.
//!
//! The node config is the shipped file with only its deployment-specific lines replaced:
//! loopback listen and route ports instead of 4222/6222 and the `fe-nats-N.fe-nats` names,
//! a per-node store directory, and no `include "accounts.conf"` (per-service users are proven
//! by the event-log tests; here every client is anonymous). Every replacement must find its
//! line: a changed shipped file fails the test kit loudly instead of testing something else.
//!
//! Nodes are killed with SIGKILL ([`NatsCluster::kill`]) and restarted over their own store
//! ([`NatsCluster::restart`]), like a crashed pod coming back with its volume.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::nats::nats_server_binary;

/// The cluster becomes usable once a JetStream meta leader is elected (a few seconds).
const READY_DEADLINE: Duration = Duration::from_secs(30);
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// One node: its ports, store and process.
struct Node {
    name: String,
    client_port: u16,
    route_port: u16,
    monitor_port: u16,
    store: TempDir,
    scratch: TempDir,
    child: Option<Child>,
}

/// A running 3-node cluster owned by one test; every node is killed when it is dropped.
pub struct NatsCluster {
    nodes: Vec<Node>,
    binary: PathBuf,
    template: String,
}

impl NatsCluster {
    /// Starts three nodes from `nats/cluster-node.conf` and waits until JetStream answers on
    /// every one of them.
    pub async fn start() -> anyhow::Result<Self> {
        let template = std::fs::read_to_string(workspace_root().join("nats/cluster-node.conf"))
            .context("reading nats/cluster-node.conf")?;
        let mut last_error = None;
        // Probed ports may be taken before the nodes bind them: retry on fresh ports.
        for _ in 0..3 {
            let mut cluster = NatsCluster {
                nodes: Vec::new(),
                binary: nats_server_binary(),
                template: template.clone(),
            };
            for i in 0..3 {
                cluster.nodes.push(Node {
                    name: format!("fe-nats-{i}"),
                    client_port: crate::process::free_port()?,
                    route_port: crate::process::free_port()?,
                    monitor_port: crate::process::free_port()?,
                    store: TempDir::new()?,
                    scratch: TempDir::new()?,
                    child: None,
                });
            }
            let mut started = Ok(());
            for i in 0..3 {
                if let Err(e) = cluster.spawn(i) {
                    started = Err(e);
                    break;
                }
            }
            let ready = match started {
                Ok(()) => cluster.wait_ready().await,
                Err(e) => Err(e),
            };
            match ready {
                Ok(()) => return Ok(cluster),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the NATS cluster did not start")))
    }

    /// `FE_NATS_URL` for the whole cluster: every node, comma-separated.
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The server name of node `i` (`fe-nats-<i>`), as JetStream reports leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Connects a client that may use any node (and follows the cluster across failures).
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        let servers: Vec<String> = (0..self.nodes.len()).map(|i| self.url(i)).collect();
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .context("connecting to the NATS cluster")
    }

    /// The node index that leads `stream` right now.
    pub async fn stream_leader(&self, stream: &str) -> anyhow::Result<usize> {
        let info = self.stream_cluster(stream).await?;
        let leader = info["leader"].as_str().unwrap_or_default();
        self.nodes
            .iter()
            .position(|n| n.name == leader)
            .with_context(|| format!("stream {stream} has no known leader: {info}"))
    }

    /// Waits until `stream` has a leader and every other node is a current replica.
    pub async fn wait_stream_current(
        &self,
        stream: &str,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let end = Instant::now() + deadline;
        loop {
            if let Ok(info) = self.stream_cluster(stream).await {
                let replicas = info["replicas"].as_array().cloned().unwrap_or_default();
                let all_current = replicas.len() + 1 == self.nodes.len()
                    && replicas
                        .iter()
                        .all(|r| r["current"] == true && r["offline"] != true);
                if info["leader"].is_string() && all_current {
                    return Ok(());
                }
                if Instant::now() >= end {
                    bail!("stream {stream} replicas not current within {deadline:?}: {info}");
                }
            } else if Instant::now() >= end {
                bail!("stream {stream} unreachable within {deadline:?}");
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Kills node `i` with SIGKILL (a crash, not a shutdown) and waits for it to exit.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts node `i` again over its own store; returns once it answers JetStream requests.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i).await;
        self.spawn(i)?;
        let end = Instant::now() + READY_DEADLINE;
        while !self.jetstream_answers(i).await {
            if Instant::now() >= end {
                bail!(
                    "{} not ready after restart: {}",
                    self.nodes[i].name,
                    self.log_tail(i)
                );
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        Ok(())
    }

    /// The raw `cluster` object of `$JS.API.STREAM.INFO.<stream>` (leader, replicas).
    async fn stream_cluster(&self, stream: &str) -> anyhow::Result<serde_json::Value> {
        let client = self.client().await?;
        let js = async_nats::jetstream::new(client);
        let info: serde_json::Value = tokio::time::timeout(
            Duration::from_secs(5),
            js.request(format!("STREAM.INFO.{stream}"), &()),
        )
        .await
        .context("stream info timed out")??;
        if let Some(error) = info.get("error") {
            bail!("stream info: {error}");
        }
        Ok(info["cluster"].clone())
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let config = self.node_config(i)?;
        let node = &mut self.nodes[i];
        let config_path = node.scratch.path().join("node.conf");
        std::fs::write(&config_path, config).context("writing a node config")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.scratch.path().join("nats-server.log"))
            .context("opening a node log")?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config_path)
            .env("FE_NATS_NAME", &node.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// The shipped node config with its deployment-specific lines made local.
    fn node_config(&self, i: usize) -> anyhow::Result<String> {
        let node = &self.nodes[i];
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("    \"nats-route://127.0.0.1:{}\"", n.route_port))
            .collect();
        let mut text = self.template.clone();
        let replacements: Vec<(String, String)> = vec![
            (
                "listen: 0.0.0.0:4222".into(),
                format!("listen: 127.0.0.1:{}", node.client_port),
            ),
            (
                "http: 0.0.0.0:8222".into(),
                format!("http: 127.0.0.1:{}", node.monitor_port),
            ),
            (
                "store_dir: \"/data/jetstream\"".into(),
                format!("store_dir: \"{}\"", node.store.path().display()),
            ),
            (
                "listen: 0.0.0.0:6222".into(),
                format!("listen: 127.0.0.1:{}", node.route_port),
            ),
            (
                (0..3)
                    .map(|k| format!("    \"nats-route://fe-nats-{k}.fe-nats:6222\""))
                    .collect::<Vec<_>>()
                    .join("\n"),
                routes.join("\n"),
            ),
            ("include \"accounts.conf\"".into(), String::new()),
        ];
        for (from, to) in replacements {
            if !text.contains(&from) {
                bail!("nats/cluster-node.conf no longer contains `{from}`; update the test kit");
            }
            text = text.replace(&from, &to);
        }
        Ok(text)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let end = Instant::now() + READY_DEADLINE;
        for i in 0..self.nodes.len() {
            loop {
                if let Some(child) = self.nodes[i].child.as_mut() {
                    if let Some(status) = child.try_wait()? {
                        bail!(
                            "{} exited with {status}: {}",
                            self.nodes[i].name,
                            self.log_tail(i)
                        );
                    }
                }
                if self.jetstream_answers(i).await {
                    break;
                }
                if Instant::now() >= end {
                    bail!("{} not ready: {}", self.nodes[i].name, self.log_tail(i));
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        }
        Ok(())
    }

    /// True when node `i` accepts a client and the cluster answers `$JS.API.INFO` through it
    /// (which needs an elected meta leader).
    async fn jetstream_answers(&self, i: usize) -> bool {
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_millis(500))
            .connect(self.url(i));
        let Ok(client) = connect.await else {
            return false;
        };
        let js = async_nats::jetstream::new(client);
        let probe = js.request::<_, _, serde_json::Value>("INFO", &());
        match tokio::time::timeout(Duration::from_secs(2), probe).await {
            Ok(Ok(answer)) => answer.get("error").is_none(),
            _ => false,
        }
    }

    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.nodes[i].scratch.path().join("nats-server.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}

/// The repository root (services/testkit → ../..).
pub(crate) fn workspace_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_replicated_stream_survives_its_leader_and_the_node_catches_up() {
        let mut cluster = NatsCluster::start().await.unwrap();
        let js = async_nats::jetstream::new(cluster.client().await.unwrap());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "PROBE".into(),
            subjects: vec!["probe.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
        cluster
            .wait_stream_current("PROBE", Duration::from_secs(20))
            .await
            .unwrap();
        let leader = cluster.stream_leader("PROBE").await.unwrap();
        cluster.kill(leader).await;
        // Acknowledged while the old leader is down: a quorum of two stores it.
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let acked = match js.publish("probe.a", "x".into()).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            if acked {
                break;
            }
            assert!(Instant::now() < end, "no new leader took over");
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        assert_ne!(cluster.stream_leader("PROBE").await.unwrap(), leader);
        cluster.restart(leader).await.unwrap();
        cluster
            .wait_stream_current("PROBE", Duration::from_secs(30))
            .await
            .unwrap();
    }
}
