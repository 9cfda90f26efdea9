//! The platform as separate `file-engine` processes (api, projector, workers, scanner) over a
//! real nats-server (one node or the 3-node cluster), PostgreSQL (the shared server or a
//! private one that may be crashed), clamd and local storage, plus what scenarios judge by:
//! the HTTP API and the event log, never the read-model tables or storage paths.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use platform::event_log::LoggedCommit;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::clamd::Clamd;
use testkit::jwt::{TestKeys, TEST_AUDIENCE, TEST_ISSUER};
use testkit::nats::NatsServer;
use testkit::nats_cluster::NatsCluster;
use testkit::pg_cluster::PgCluster;
use testkit::postgres::TestDb;
use testkit::role::RoleProcess;

/// An API listing: path → (kind, sha256 of a file, status of a file).
pub type Listing = HashMap<String, (String, Option<String>, Option<String>)>;

pub const BINARY: &str = env!("CARGO_BIN_EXE_file-engine");

/// Where the event log lives.
pub enum Nats {
    Single(Box<NatsServer>),
    Cluster(NatsCluster),
}

impl Nats {
    pub fn urls(&self) -> String {
        match self {
            Nats::Single(s) => s.url.clone(),
            Nats::Cluster(c) => c.urls(),
        }
    }

    fn replicas(&self) -> &'static str {
        match self {
            Nats::Single(_) => "1",
            Nats::Cluster(_) => "3",
        }
    }
}

/// Where the read models live.
pub enum Database {
    Shared(TestDb),
    Private(PgCluster, String),
}

impl Database {
    pub fn url(&self) -> String {
        match self {
            Database::Shared(db) => db.url.clone(),
            Database::Private(_, url) => url.clone(),
        }
    }
}

/// What a scenario needs started.
pub struct RigSpec {
    pub cluster: bool,
    pub private_postgres: bool,
    pub clamd: bool,
    pub workers: usize,
    pub env: Vec<(&'static str, String)>,
}

impl Default for RigSpec {
    fn default() -> Self {
        RigSpec {
            cluster: false,
            private_postgres: false,
            clamd: false,
            workers: 1,
            env: Vec::new(),
        }
    }
}

pub struct Rig {
    pub nats: Nats,
    pub db: Database,
    pub clamd: Option<Clamd>,
    pub storage: tempfile::TempDir,
    pub keys: TestKeys,
    pub base: String,
    pub http: reqwest::Client,
    pub api: RoleProcess,
    pub projector: RoleProcess,
    pub workers: Vec<RoleProcess>,
    pub scanner: Option<RoleProcess>,
    extra: Vec<(&'static str, String)>,
}

impl Rig {
    pub async fn start(spec: RigSpec) -> Rig {
        let nats = if spec.cluster {
            Nats::Cluster(NatsCluster::start().await.expect("3-node NATS cluster"))
        } else {
            Nats::Single(Box::new(NatsServer::start().await.expect("nats-server")))
        };
        let db = if spec.private_postgres {
            let pg = PgCluster::start_new().await.expect("private PostgreSQL");
            let url = pg.create_database("fe_faults").await.expect("database");
            Database::Private(pg, url)
        } else {
            Database::Shared(TestDb::create().await.expect("test database"))
        };
        let clamd = if spec.clamd {
            Some(Clamd::start().await.expect("clamd"))
        } else {
            None
        };
        let storage = tempfile::tempdir().expect("storage dir");
        let keys = TestKeys::es256();
        let port = testkit::free_port().expect("api port");
        let mut rig_env = spec.env.clone();
        if let Some(c) = &clamd {
            rig_env.push(("FE_CLAMD_ADDR", c.addr.clone()));
        }
        let base_env =
            |extra: &[(&'static str, String)]| role_env(&nats, &db, &storage, &keys, extra);
        // `file-engine migrate` first, as in a deployment: the stream (replicated in the
        // cluster), consumers and tables exist before the roles start and verify them.
        migrate(&base_env(&rig_env)).await;
        let projector =
            RoleProcess::spawn(BINARY, "projector", base_env(&rig_env)).expect("projector");
        let mut api_env = base_env(&rig_env);
        api_env.insert("FE_HTTP_ADDR".into(), format!("127.0.0.1:{port}"));
        let api = RoleProcess::spawn(BINARY, "api", api_env).expect("api");
        let base = format!("http://127.0.0.1:{port}");
        if let Err(e) = testkit::role::wait_ready(&base, Duration::from_secs(90)).await {
            panic!(
                "{e}\napi: {}\nprojector: {}",
                api.log_tail(20),
                projector.log_tail(20)
            );
        }
        let workers = (0..spec.workers)
            .map(|_| RoleProcess::spawn(BINARY, "worker", base_env(&rig_env)).expect("worker"))
            .collect();
        let scanner = clamd
            .as_ref()
            .map(|_| RoleProcess::spawn(BINARY, "scanner", base_env(&rig_env)).expect("scanner"));
        Rig {
            nats,
            db,
            clamd,
            storage,
            keys,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            api,
            projector,
            workers,
            scanner,
            extra: rig_env,
        }
    }

    /// The complete environment of one more process of this platform.
    pub fn env(&self, extra: &[(&'static str, String)]) -> HashMap<String, String> {
        let mut all = self.extra.clone();
        all.extend_from_slice(extra);
        role_env(&self.nats, &self.db, &self.storage, &self.keys, &all)
    }

    /// Prints the last `lines` log lines of every role process to stderr.
    pub fn print_role_logs(&self, lines: usize) {
        let roles = [("api", &self.api), ("projector", &self.projector)]
            .into_iter()
            .chain(self.workers.iter().map(|w| ("worker", w)))
            .chain(self.scanner.iter().map(|s| ("scanner", s)));
        for (name, role) in roles {
            eprintln!(
                "--- {name} (last {lines} lines) ---\n{}",
                role.log_tail(lines)
            );
        }
    }

    /// An admin token valid for two hours: the long form outlives the kit's 10-minute tokens.
    pub fn admin(&self, tenant: &str) -> String {
        let now = testkit::jwt::now();
        self.keys.token_with(serde_json::json!({
            "sub": "root", "tenant": tenant, "roles": ["admin"],
            "iss": TEST_ISSUER, "aud": TEST_AUDIENCE, "iat": now, "exp": now + 7200,
        }))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends one command; `Some(task id)` when it was acknowledged (202).
    pub async fn command(&self, token: &str, body: &Value) -> Option<String> {
        let resp = self
            .http
            .post(self.url("/v1/commands"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .ok()?;
        accepted(resp).await
    }

    /// Uploads `bytes` to `path`; `Some(task id)` when it was acknowledged (202).
    pub async fn upload(&self, token: &str, path: &str, bytes: Vec<u8>) -> Option<String> {
        let resp = self
            .http
            .put(self.url(&format!("/v1/files{path}")))
            .bearer_auth(token)
            .body(bytes)
            .send()
            .await
            .ok()?;
        accepted(resp).await
    }

    pub async fn get_json(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.get_json_at(&self.base, token, path).await
    }

    /// `GET` on another API process of the same platform (e.g. one serving a replay).
    pub async fn get_json_at(&self, base: &str, token: &str, path: &str) -> (StatusCode, Value) {
        match self
            .http
            .request(Method::GET, format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status();
                (status, resp.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
        }
    }

    /// Polls the task until it is terminal or `deadline` passes; the last answer either way.
    pub async fn wait_task(&self, token: &str, id: &str, deadline: Instant) -> Value {
        loop {
            let (status, task) = self
                .get_json(token, &format!("/v1/tasks/{id}?wait=5"))
                .await;
            if status == StatusCode::OK && is_terminal(&task) {
                return task;
            }
            if Instant::now() >= deadline {
                return task;
            }
            if status != StatusCode::OK {
                // The API is down or not ready: poll again shortly.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Waits for every task (concurrently, bounded) and returns id → final answer.
    pub async fn wait_all(
        &self,
        token: &str,
        ids: &[String],
        within: Duration,
    ) -> HashMap<String, Value> {
        let deadline = Instant::now() + within;
        futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let task = self.wait_task(token, &id, deadline).await;
                (id, task)
            })
            .buffer_unordered(16)
            .collect()
            .await
    }

    /// Every entry below `root` as the API lists it: path → (kind, sha256 for files, status).
    pub async fn tree(&self, token: &str, root: &str) -> Listing {
        self.tree_at(&self.base, token, root).await
    }

    /// [`Rig::tree`] as the API process at `base` sees it.
    pub async fn tree_at(&self, base: &str, token: &str, root: &str) -> Listing {
        let mut out = HashMap::new();
        let mut pending = vec![root.to_owned()];
        while let Some(dir) = pending.pop() {
            let mut cursor: Option<String> = None;
            loop {
                let mut path = format!("/v1/list{dir}?limit=200");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={}", urlencode(c)));
                }
                let (status, page) = self.get_json_at(base, token, &path).await;
                if status == StatusCode::NOT_FOUND {
                    break;
                }
                assert_eq!(status, StatusCode::OK, "list {dir}: {page}");
                for entry in page["entries"].as_array().cloned().unwrap_or_default() {
                    let p = entry["path"].as_str().unwrap_or_default().to_owned();
                    let kind = entry["kind"].as_str().unwrap_or_default().to_owned();
                    if kind == "dir" {
                        pending.push(p.clone());
                    }
                    let sha = entry["sha256"].as_str().map(str::to_owned);
                    let st = entry["status"].as_str().map(str::to_owned);
                    out.insert(p, (kind, sha, st));
                }
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
        }
        out
    }

    /// Every commit of the event log, in log order.
    pub async fn read_log(&self) -> Vec<LoggedCommit> {
        read_log(&self.nats.urls()).await
    }
}

/// Runs `file-engine migrate` to completion (retried while a fresh cluster elects leaders).
async fn migrate(env: &HashMap<String, String>) {
    let mut last = String::new();
    for _ in 0..5 {
        let output = tokio::process::Command::new(BINARY)
            .arg("migrate")
            .env_clear()
            .envs(env)
            .output()
            .await
            .expect("run file-engine migrate");
        if output.status.success() {
            return;
        }
        last = String::from_utf8_lossy(&output.stderr).into_owned();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("file-engine migrate failed: {last}");
}

/// `file-engine` configuration for one process of a rig.
fn role_env(
    nats: &Nats,
    db: &Database,
    storage: &tempfile::TempDir,
    keys: &TestKeys,
    extra: &[(&'static str, String)],
) -> HashMap<String, String> {
    let ops_port = testkit::free_port().expect("ops port");
    let mut env: HashMap<String, String> = [
        ("FE_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("FE_OPS_ADDR", format!("127.0.0.1:{ops_port}")),
        ("FE_NATS_URL", nats.urls()),
        ("FE_NATS_REPLICAS", nats.replicas().to_owned()),
        ("FE_DATABASE_URL", db.url()),
        ("FE_STORAGE", format!("local:{}", storage.path().display())),
        (
            "FE_JWT_PUBLIC_KEYS",
            keys.public_pem_path.display().to_string(),
        ),
        ("FE_JWT_ISSUER", TEST_ISSUER.to_owned()),
        ("FE_JWT_AUDIENCE", TEST_AUDIENCE.to_owned()),
        ("FE_LOG_LEVEL", "warn".to_owned()),
        // Load generators are one principal; rate limits have their own tests.
        ("FE_RATE_LIMIT_PER_MIN", "0".to_owned()),
        ("FE_TENANT_RATE_LIMIT_PER_MIN", "0".to_owned()),
        // A killed worker's deliveries come back within seconds. Not shorter: on a saturated
        // 2-core machine a live worker's heartbeats (every third of it) can arrive late, and a
        // second delivery then runs the same task concurrently (see the README's reliability
        // section on the move recorded `failed` with 3 s).
        ("FE_WORKER_ACK_WAIT_S", "10".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), v.clone());
    }
    env
}

async fn accepted(resp: reqwest::Response) -> Option<String> {
    if resp.status() != StatusCode::ACCEPTED {
        return None;
    }
    let v: Value = resp.json().await.ok()?;
    v["task_id"].as_str().map(str::to_owned)
}

pub fn is_terminal(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("succeeded" | "failed" | "dead_lettered")
    )
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads the whole event stream through any of `urls` (retrying while the log is unavailable).
pub async fn read_log(urls: &str) -> Vec<LoggedCommit> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match try_read_log(urls).await {
            Ok(commits) => return commits,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot read the event log: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn try_read_log(urls: &str) -> anyhow::Result<Vec<LoggedCommit>> {
    let servers: Vec<&str> = urls.split(',').collect();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(servers)
        .await?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(platform::streams::EVENTS_STREAM).await?;
    let last = stream.info().await?.state.last_sequence;
    let mut commits = Vec::new();
    if last == 0 {
        return Ok(commits);
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await? {
        let m = m?;
        let commit = LoggedCommit::from_message(&m)?;
        let seq = commit.stream_seq;
        commits.push(commit);
        if seq >= last {
            break;
        }
    }
    Ok(commits)
}

impl Drop for Rig {
    /// A failed scenario quotes what each process said last.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut processes = vec![&self.api, &self.projector];
        processes.extend(self.workers.iter());
        processes.extend(self.scanner.iter());
        for p in processes {
            eprintln!(
                "--- {} (started {}x):\n{}",
                p.role(),
                p.starts,
                p.log_tail(15)
            );
        }
    }
}
