//! `TestApp`: the whole platform (api, projector, worker) started in-process against a
//! spawned nats-server, a fresh PostgreSQL database and a temporary storage root, with a
//! typed client so that test bodies read as scenarios. Every test owns its app, so tests
//! run in parallel without sharing state.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use file_engine::{start, Platform, Role, Services};
use platform::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::jwt::{TestKeys, TEST_AUDIENCE, TEST_ISSUER};
use testkit::nats::NatsServer;
use testkit::postgres::TestDb;

/// Where a test app keeps file bytes: a temporary directory, or a bucket of its own moto
/// server (`FE_STORAGE=s3://…`, the same path through `Platform::connect` as in production).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub keys: TestKeys,
    pub nats: NatsServer,
    pub db: TestDb,
    pub storage: tempfile::TempDir,
    pub platform: Platform,
    pub clamd: Option<testkit::clamd::Clamd>,
    /// The S3 server of a [`Backend::S3`] app.
    pub s3: Option<testkit::s3::S3Server>,
    services: Option<Services>,
}

pub fn config_for(
    nats: &NatsServer,
    db: &TestDb,
    storage: &std::path::Path,
    keys: &TestKeys,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("FE_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("FE_NATS_URL", nats.url.clone()),
        ("FE_DATABASE_URL", db.url.clone()),
        ("FE_STORAGE", format!("local:{}", storage.display())),
        (
            "FE_JWT_PUBLIC_KEYS",
            keys.public_pem_path.display().to_string(),
        ),
        ("FE_JWT_ISSUER", TEST_ISSUER.to_owned()),
        ("FE_JWT_AUDIENCE", TEST_AUDIENCE.to_owned()),
        ("FE_LOG_LEVEL", "warn".to_owned()),
        // Roles started without the API open an ops listener: any free port, never the
        // role's fixed default (tests run in parallel).
        ("FE_OPS_ADDR", "127.0.0.1:0".to_owned()),
        // Scenario tests send many requests per principal; the limiter has its own test.
        ("FE_RATE_LIMIT_PER_MIN", "1000000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[Role::Api, Role::Projector, Role::Worker], &[]).await
    }

    /// Every role including the scanner, against a real clamd of its own.
    pub async fn spawn_with_scanner(extra: &[(&str, &str)]) -> Self {
        Self::spawn_with_scanner_on(Backend::Local, extra).await
    }

    /// Like [`TestApp::spawn_with_scanner`], with its bytes on `backend`.
    pub async fn spawn_with_scanner_on(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let clamd = testkit::clamd::Clamd::start().await.expect("clamd");
        let mut env: Vec<(&str, &str)> = vec![
            ("FE_CLAMD_ADDR", clamd.addr.as_str()),
            ("FE_LINK_SECRET", "test-link-secret-of-at-least-32-bytes"),
        ];
        env.extend_from_slice(extra);
        let mut app = Self::spawn_with_on(
            backend,
            &[Role::Api, Role::Projector, Role::Worker, Role::Scanner],
            &env,
        )
        .await;
        app.clamd = Some(clamd);
        app
    }

    /// Like [`TestApp::spawn_with`], with its bytes on `backend`.
    pub async fn spawn_with_on(backend: Backend, roles: &[Role], extra: &[(&str, &str)]) -> Self {
        let s3 = match backend {
            Backend::Local => None,
            Backend::S3 => Some(testkit::s3::S3Server::start().await.expect("moto_server")),
        };
        let mut s3_env = Vec::new();
        if let Some(server) = &s3 {
            // The SDK reads credentials from the process environment only (never from
            // FE_* configuration). Every test sets the same values moto accepts, so tests
            // running in one process (plain `cargo test`) never disagree about them.
            std::env::set_var("AWS_ACCESS_KEY_ID", testkit::s3::ACCESS_KEY_ID);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", testkit::s3::SECRET_ACCESS_KEY);
            std::env::set_var("AWS_REGION", testkit::s3::REGION);
            let bucket = server.create_bucket().await.expect("bucket");
            s3_env.push(("FE_STORAGE", format!("s3://{bucket}/e2e")));
            s3_env.push(("FE_S3_ENDPOINT", server.endpoint.clone()));
        }
        let mut env: Vec<(&str, &str)> = s3_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(extra);
        let mut app = Self::spawn_with(roles, &env).await;
        app.s3 = s3;
        app
    }

    pub async fn spawn_with(roles: &[Role], extra: &[(&str, &str)]) -> Self {
        let nats = NatsServer::start().await.expect("nats-server");
        let db = TestDb::create().await.expect("test database");
        let storage = tempfile::tempdir().expect("storage dir");
        let keys = TestKeys::es256();
        let env = config_for(&nats, &db, storage.path(), &keys, extra);
        let config = Config::from_map(&env).expect("config");
        let platform = Platform::connect(config).await.expect("platform");
        let services = start(&platform, roles).await.expect("services");
        let base = services
            .http_addr
            .map(|a| format!("http://{a}"))
            .unwrap_or_default();
        Self {
            base,
            http: reqwest::Client::new(),
            keys,
            nats,
            db,
            storage,
            platform,
            clamd: None,
            s3: None,
            services: Some(services),
        }
    }

    pub async fn stop_services(&mut self) {
        if let Some(s) = self.services.take() {
            s.shutdown().await;
        }
    }

    pub fn token(&self, sub: &str, tenant: &str, roles: &[&str]) -> String {
        self.keys.token(sub, tenant, roles)
    }

    pub fn admin(&self, tenant: &str) -> String {
        self.token("root", tenant, &["admin"])
    }

    pub fn env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        config_for(&self.nats, &self.db, self.storage.path(), &self.keys, extra)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    pub async fn post_command(
        &self,
        token: &str,
        body: &Value,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut rb = self
            .request(Method::POST, "/v1/commands", Some(token))
            .await
            .json(body);
        if let Some(k) = key {
            rb = rb.header("Idempotency-Key", k);
        }
        rb.send().await.expect("post command")
    }

    /// Submits a command that must be accepted and returns its task id.
    pub async fn submit(&self, token: &str, body: Value) -> String {
        let resp = self.post_command(token, &body, None).await;
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "command {body} not accepted"
        );
        let v: Value = resp.json().await.unwrap();
        v["task_id"].as_str().unwrap().to_owned()
    }

    pub async fn get_json(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self
            .request(Method::GET, path, Some(token))
            .await
            .send()
            .await
            .expect("get");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Long-polls a task until it is terminal (deadline 60 s) and returns it.
    /// Grants a rule as `admin`; asserts 201 and returns its body.
    pub async fn grant_rule(
        &self,
        admin: &str,
        subject: &str,
        path: &str,
        permissions: &[&str],
        effect: &str,
    ) -> Value {
        let body = serde_json::json!({"subject": subject, "path": path,
            "permissions": permissions, "effect": effect});
        let resp = self
            .request(reqwest::Method::POST, "/v1/acl/rules", Some(admin))
            .await
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(status, reqwest::StatusCode::CREATED, "grant {body}: {v}");
        v
    }

    pub async fn wait_task(&self, token: &str, task_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, v) = self
                .get_json(token, &format!("/v1/tasks/{task_id}?wait=10"))
                .await;
            assert_eq!(status, StatusCode::OK, "task {task_id}: {v}");
            if matches!(
                v["status"].as_str(),
                Some("succeeded" | "failed" | "dead_lettered")
            ) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "task {task_id} not terminal in time: {v}"
            );
        }
    }

    /// Runs a command to a terminal state and returns the task.
    pub async fn run(&self, token: &str, body: Value) -> Value {
        let id = self.submit(token, body).await;
        self.wait_task(token, &id).await
    }

    /// The kind (`file` / `dir`) the catalogue shows at a tenant path, if any. Storage holds
    /// only blobs: paths exist in the catalogue alone.
    pub async fn kind(&self, tenant: &str, path: &str) -> Option<String> {
        sqlx::query_scalar("SELECT kind FROM entries WHERE tenant = $1 AND path = $2")
            .bind(tenant)
            .bind(path)
            .fetch_optional(&self.platform.pool)
            .await
            .expect("catalogue query")
    }

    pub async fn exists(&self, tenant: &str, path: &str) -> bool {
        self.kind(tenant, path).await.is_some()
    }

    pub async fn is_dir(&self, tenant: &str, path: &str) -> bool {
        self.kind(tenant, path).await.as_deref() == Some("dir")
    }

    /// The blob files of a tenant on disk (local storage layout `blobs/<t>/<aa>/<sha256>`).
    /// The tenant's blob names (SHA-256), sorted, as the storage backend lists them.
    pub async fn blob_names(&self, tenant: &str) -> Vec<String> {
        let tenant = events::TenantId::parse(tenant).expect("tenant");
        let blobs = self.platform.storage.list_blobs(Some(&tenant)).await;
        let mut names: Vec<String> = blobs
            .expect("list blobs")
            .into_iter()
            .map(|b| b.blob.as_str().to_owned())
            .collect();
        names.sort();
        names
    }

    /// Removes one of the tenant's blobs from the backend, as an operator might by mistake.
    pub async fn remove_blob(&self, tenant: &str, sha256: &str) {
        let tenant = events::TenantId::parse(tenant).expect("tenant");
        let blob = platform::storage::BlobId::parse(sha256).expect("blob id");
        let removed = self.platform.storage.delete_blob(&tenant, &blob).await;
        assert!(
            removed.expect("delete blob"),
            "blob {sha256} was not stored"
        );
    }

    pub fn blob_files(&self, tenant: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(shards) = std::fs::read_dir(self.storage.path().join("blobs").join(tenant)) else {
            return found;
        };
        for shard in shards.flatten() {
            for blob in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                found.push(blob.path());
            }
        }
        found.sort();
        found
    }
}

/// Polls `check` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(10);
    while !check().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

impl TestApp {
    pub async fn upload(
        &self,
        token: &str,
        path: &str,
        bytes: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut rb = self
            .request(Method::PUT, &format!("/v1/files{path}"), Some(token))
            .await
            .body(bytes);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().await.expect("upload")
    }

    /// Uploads and waits for the task to be terminal.
    pub async fn upload_and_wait(&self, token: &str, path: &str, bytes: Vec<u8>) -> Value {
        let resp = self.upload(token, path, bytes, &[]).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "upload of {path}");
        let v: Value = resp.json().await.unwrap();
        self.wait_task(token, v["task_id"].as_str().unwrap()).await
    }

    /// Staged uploads of a tenant still in storage, whichever the backend (asked through the
    /// storage itself: everything staged before now).
    pub async fn staged_left(&self, tenant: &str) -> usize {
        self.platform
            .storage
            .stale_staged(Duration::ZERO)
            .await
            .expect("listing staged uploads")
            .iter()
            .filter(|(t, _)| t.as_str() == tenant)
            .count()
    }

    /// Uploads of a tenant in quarantine: files in the local quarantine directory, or keys
    /// under the quarantine prefix of the S3 bucket (listed with a plain request to moto,
    /// which needs no signature).
    pub async fn quarantined_count(&self, tenant: &str) -> usize {
        let Some(server) = &self.s3 else {
            return std::fs::read_dir(self.storage.path().join("quarantine").join(tenant))
                .map(|d| d.count())
                .unwrap_or(0);
        };
        let spec = self.platform.config.storage.trim_start_matches("s3://");
        let (bucket, prefix) = spec.split_once('/').unwrap_or((spec, ""));
        let url = format!(
            "{}/{bucket}?list-type=2&prefix={prefix}/quarantine/{tenant}/",
            server.endpoint
        );
        let listing = reqwest::get(url).await.unwrap().text().await.unwrap();
        listing.matches("<Key>").count()
    }

    /// Staged uploads of a tenant still on disk.
    pub fn staged_count(&self, tenant: &str) -> usize {
        std::fs::read_dir(self.storage.path().join("staging").join(tenant))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl TestApp {
    /// Publishes one commit of the task `task_id` straight into the log, as a buggy or older
    /// writer could have (no API validation, no worker): each `(event_type, payload)` becomes
    /// one stored event. Returns its stream sequence.
    pub async fn inject_task_commit(
        &self,
        tenant: &str,
        task_id: uuid::Uuid,
        events: Vec<(String, Value)>,
    ) -> u64 {
        use platform::event_log::{aggregate_id, Commit, StoredEvent};
        let tenant_id = events::TenantId::parse(tenant).expect("tenant");
        let id = aggregate_id(&tenant_id, &task_id.to_string());
        let stored: Vec<StoredEvent> = events
            .into_iter()
            .enumerate()
            .map(|(i, (event_type, payload))| StoredEvent {
                aggregate_type: "task".into(),
                aggregate_id: id.clone(),
                sequence: i + 1,
                event_type,
                event_version: "1".into(),
                payload,
                metadata: serde_json::json!({"principal": "root"}),
            })
            .collect();
        let commit = Commit { events: stored };
        let ack = self
            .platform
            .log
            .jetstream()
            .publish_with_headers(
                commit.subject().expect("subject"),
                commit.headers().expect("headers"),
                serde_json::to_vec(&commit).expect("commit").into(),
            )
            .await
            .expect("publish")
            .await
            .expect("ack");
        ack.sequence
    }
}
