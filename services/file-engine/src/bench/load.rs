//! Load generation: a closed loop of N concurrent clients (each sends its next request when the
//! previous one answered) for a number of requests or a duration, and HTTP helpers for the
//! requests the scenarios send. Every request's latency is recorded; failures are counted,
//! never hidden (a figure with errors says so).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// When a closed loop stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests in total.
    Count(usize),
    /// When this much time has passed (requests in flight finish).
    After(Duration),
}

/// What a closed loop measured.
pub struct Outcome<T> {
    /// Results of the successful requests, in completion order.
    pub results: Vec<T>,
    /// Latency of every successful request.
    pub latencies: Vec<Duration>,
    pub errors: usize,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// From the first request sent to the last answer.
    pub elapsed: Duration,
}

impl<T> Outcome<T> {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.results.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A note on errors, empty when there were none.
    pub fn error_note(&self) -> String {
        match &self.first_error {
            Some(e) => format!("{} errors, first: {e}", self.errors),
            None => String::new(),
        }
    }
}

/// Runs `concurrency` clients; client requests are numbered globally from 0.
pub async fn closed_loop<T, F, Fut>(concurrency: usize, stop: Stop, request: F) -> Outcome<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (request, next) = (request.clone(), next.clone());
        clients.spawn(async move {
            let mut mine = Outcome {
                results: Vec::new(),
                latencies: Vec::new(),
                errors: 0,
                first_error: None,
                elapsed: Duration::ZERO,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                match stop {
                    Stop::Count(n) if i >= n => break,
                    Stop::After(d) if started.elapsed() >= d => break,
                    _ => {}
                }
                let sent = Instant::now();
                match request(i).await {
                    Ok(r) => {
                        mine.latencies.push(sent.elapsed());
                        mine.results.push(r);
                    }
                    Err(e) => {
                        mine.errors += 1;
                        mine.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            mine
        });
    }
    let mut all = Outcome {
        results: Vec::new(),
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok(mine) => {
                all.results.extend(mine.results);
                all.latencies.extend(mine.latencies);
                all.errors += mine.errors;
                if all.first_error.is_none() {
                    all.first_error = mine.first_error;
                }
            }
            Err(e) => {
                all.errors += 1;
                all.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    all.elapsed = started.elapsed();
    all
}

/// Sends `POST /v1/commands` and returns the task id of the 202.
pub async fn submit(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    body: &serde_json::Value,
) -> anyhow::Result<uuid::Uuid> {
    let resp = http
        .post(format!("{base}/v1/commands"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    anyhow::ensure!(status.as_u16() == 202, "command answered {status}");
    task_id_of(resp).await
}

/// The `task_id` of a 202 answer.
pub async fn task_id_of(resp: reqwest::Response) -> anyhow::Result<uuid::Uuid> {
    let v: serde_json::Value = resp.json().await?;
    v["task_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("202 without a task id")
}

/// Long-polls a task until it is terminal and returns its status.
pub async fn wait_terminal(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    task: uuid::Uuid,
    deadline: Duration,
) -> anyhow::Result<String> {
    let end = Instant::now() + deadline;
    loop {
        let wait = end
            .saturating_duration_since(Instant::now())
            .as_secs()
            .clamp(1, 30);
        let v: serde_json::Value = http
            .get(format!("{base}/v1/tasks/{task}?wait={wait}"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        match v["status"].as_str() {
            Some(s @ ("succeeded" | "failed" | "dead_lettered")) => return Ok(s.to_owned()),
            _ if Instant::now() >= end => anyhow::bail!("task {task} not terminal in time: {v}"),
            _ => {}
        }
    }
}

/// A `mkdir` of a distinct directory (one per request number).
pub fn mkdir_body(prefix: &str, i: usize) -> serde_json::Value {
    serde_json::json!({"op": "mkdir", "path": format!("/{prefix}/d{i}"), "parents": true})
}
