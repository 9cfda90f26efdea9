//! A steady command load for infrastructure faults: `mkdir -p` of unique paths from a few
//! concurrent clients, counting what was sent and which tasks were acknowledged, until stopped.
//! Whatever a fault does to a request that was not acknowledged is allowed; an acknowledged
//! one must finish exactly once and its directory must exist.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use super::rig::{is_terminal, Rig};
use super::tally::Tally;

/// Progress of a running load, shared with the scenario.
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicUsize,
    pub refused: AtomicUsize,
    pub acked: Mutex<Vec<(String, String)>>,
    stop: AtomicBool,
}

impl Progress {
    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("progress").len()
    }

    /// Waits until `n` more commands than now were acknowledged (or panics after `within`).
    pub async fn wait_more_acked(&self, n: usize, within: Duration, what: &str) {
        let target = self.acked_count() + n;
        self.wait_until(within, what, || self.acked_count() >= target)
            .await;
    }

    /// Waits until `n` more requests than now were refused or failed.
    pub async fn wait_more_refused(&self, n: usize, within: Duration, what: &str) {
        let target = self.refused.load(Ordering::Relaxed) + n;
        self.wait_until(within, what, || {
            self.refused.load(Ordering::Relaxed) >= target
        })
        .await;
    }

    async fn wait_until(&self, within: Duration, what: &str, done: impl Fn() -> bool) {
        let end = Instant::now() + within;
        while !done() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A load running in the background.
pub struct Load {
    pub progress: Arc<Progress>,
    clients: Vec<tokio::task::JoinHandle<()>>,
    prefix: String,
}

impl Load {
    /// Starts `clients` concurrent senders of `mkdir -p <prefix>/c<client>/<n>`.
    pub fn start(rig: &Rig, token: &str, prefix: &str, clients: usize) -> Load {
        Self::start_paced(rig, token, prefix, clients, Duration::ZERO)
    }

    /// Like [`Load::start`], each client pausing `pace` after every acknowledged command: the
    /// shape of the load (its rate), so that a scenario whose judging grows with the number of
    /// commands stays within the test's time limit however fast the platform accepts.
    pub fn start_paced(
        rig: &Rig,
        token: &str,
        prefix: &str,
        clients: usize,
        pace: Duration,
    ) -> Load {
        let progress = Arc::new(Progress::default());
        let handles = (0..clients)
            .map(|c| {
                let (progress, token) = (progress.clone(), token.to_owned());
                let (http, url) = (rig.http.clone(), rig.url("/v1/commands"));
                let prefix = prefix.to_owned();
                tokio::spawn(async move {
                    let mut n = 0usize;
                    while !progress.stop.load(Ordering::Relaxed) {
                        let path = format!("{prefix}/c{c}/{n}");
                        n += 1;
                        progress.sent.fetch_add(1, Ordering::Relaxed);
                        let sent = http
                            .post(&url)
                            .bearer_auth(&token)
                            .timeout(Duration::from_secs(10))
                            .json(&json!({"op": "mkdir", "path": path, "parents": true}))
                            .send()
                            .await;
                        let id = match sent {
                            Ok(resp) if resp.status() == StatusCode::ACCEPTED => resp
                                .json::<serde_json::Value>()
                                .await
                                .ok()
                                .and_then(|v| v["task_id"].as_str().map(str::to_owned)),
                            _ => None,
                        };
                        match id {
                            Some(id) => {
                                progress.acked.lock().expect("progress").push((id, path));
                                if !pace.is_zero() {
                                    tokio::time::sleep(pace).await;
                                }
                            }
                            None => {
                                progress.refused.fetch_add(1, Ordering::Relaxed);
                                // Refused while a dependency is down: do not spin.
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            progress,
            clients: handles,
            prefix: prefix.to_owned(),
        }
    }

    /// Stops sending, waits for every acknowledged task and judges the run: the log's
    /// outcomes plus every acknowledged directory present in the API's tree.
    pub async fn finish(self, rig: &Rig, token: &str, within: Duration) -> Tally {
        self.progress.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.expect("load client");
        }
        let acked = self.progress.acked.lock().expect("progress").clone();
        let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
        let finals = rig.wait_all(token, &ids, within).await;
        let log = rig.read_log().await;
        let mut tally = Tally::judge(self.progress.sent.load(Ordering::Relaxed), &finals, &log);
        if finals.values().filter(|t| is_terminal(t)).count() < ids.len() {
            // Tasks left open: what the roles said is the first thing to read in a CI log.
            rig.print_role_logs(60);
        }
        let tree = rig.tree(token, &self.prefix).await;
        for (id, path) in &acked {
            let Some(task) = finals.get(id).filter(|t| is_terminal(t)) else {
                continue; // already counted lost by the tally
            };
            if task["status"] != "succeeded" || tree.get(path).map(|e| e.0.as_str()) != Some("dir")
            {
                eprintln!("lost: {path} (task {id}): {:?}", finals.get(id));
                tally.lost += 1;
            }
        }
        tally
    }
}
