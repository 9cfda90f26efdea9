//! A fresh PostgreSQL database per test, on a real server, dropped when the test ends.
//!
//! Owns the life of the `fe_test_<unix secs>_<random>` databases it creates on the server of
//! `$FE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`). That server
//! is shared with other users and other test processes: nothing here touches a database whose
//! name does not start with `fe_test_`. The creation time is part of the name so that a test
//! process that died before its [`Drop`] ran leaves something sweepable: every process drops,
//! once, the `fe_test_` databases more than [`LEFTOVER_AGE`] old (no portable catalogue column
//! holds a database's creation time).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection, PgPool};

/// The server used when `$FE_TEST_DATABASE_URL` is unset (the machine's local PostgreSQL).
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Prefix of every database this module creates, and the only ones it ever drops.
const PREFIX: &str = "fe_test_";
/// Databases of this prefix older than this are leftovers of crashed runs.
const LEFTOVER_AGE: Duration = Duration::from_secs(2 * 60 * 60);
/// How long dropping a database at the end of a test may take before we give up on it.
const DROP_TIMEOUT: Duration = Duration::from_secs(15);

/// A database created for one test; dropped (with `FORCE`) when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// Connection URL of the test database (for `FE_DATABASE_URL` of an app under test).
    pub url: String,
    /// The database name, `fe_test_<unix secs>_<32 hex>`.
    pub name: String,
    admin_url: String,
}

impl TestDb {
    /// A fresh, empty database (`CREATE DATABASE … TEMPLATE template0`) on the server of
    /// `$FE_TEST_DATABASE_URL`. The first call of a process also sweeps old leftovers.
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url = admin_url();
        let mut admin = PgConnection::connect(&admin_url).await.with_context(|| {
            format!(
                "connecting to the test PostgreSQL server {} (set FE_TEST_DATABASE_URL, or run \
                 deploy/dev/test.sh which starts one)",
                redact(&admin_url)
            )
        })?;
        sweep_leftovers_once(&mut admin).await;
        let name = new_name(unix_now());
        // The name is generated here from digits and hex only: safe to splice into the SQL.
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating test database {name}"))?;
        // Closing is a courtesy to the server; the database exists either way.
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Ok(TestDb {
            url,
            name,
            admin_url,
        })
    }

    /// A small pool (at most 5 connections, as many tests share one server) on this database.
    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&self.url)
            .await
            .with_context(|| format!("connecting to test database {}", self.name))
    }
}

impl Drop for TestDb {
    /// Drops the database from a separate thread with its own runtime (this may run inside, or
    /// outside, any runtime), waiting at most [`DROP_TIMEOUT`]. Best effort: a database left
    /// behind is swept by a later run.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let (done, finished) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("drop-{name}"))
            .spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(drop_database(&admin_url, &name));
                }
                let _ = done.send(());
            });
        if spawned.is_ok() {
            let _ = finished.recv_timeout(DROP_TIMEOUT);
        }
    }
}

/// The admin URL: `$FE_TEST_DATABASE_URL` or [`DEFAULT_ADMIN_URL`].
fn admin_url() -> String {
    std::env::var("FE_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn new_name(created_at: u64) -> String {
    format!("{PREFIX}{created_at}_{}", uuid::Uuid::new_v4().simple())
}

/// The creation time encoded in a name of ours, `None` for any other name.
fn created_at(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(PREFIX)?;
    let (secs, random) = rest.split_once('_')?;
    let digits = !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit());
    let hex = !random.is_empty() && random.bytes().all(|b| b.is_ascii_hexdigit());
    if !(digits && hex) {
        return None;
    }
    secs.parse().ok()
}

/// `url` with its database replaced by `database`; user, host, port and parameters kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &url[scheme_end + at..]
        ),
        _ => url.to_string(),
    }
}

/// Drops leftovers once per process: many tests start at the same moment, one sweep is enough.
async fn sweep_leftovers_once(admin: &mut PgConnection) {
    static SWEPT: OnceLock<()> = OnceLock::new();
    if SWEPT.set(()).is_ok() {
        sweep_leftovers(admin).await;
    }
}

/// Drops the `fe_test_` databases older than [`LEFTOVER_AGE`] (by the time in their name).
async fn sweep_leftovers(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'fe\\_test\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    let cutoff = unix_now().saturating_sub(LEFTOVER_AGE.as_secs());
    for name in names {
        if created_at(&name).is_some_and(|created| created < cutoff) {
            // Another process may be sweeping the same one: failures are expected and harmless.
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut *admin)
                .await;
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    // Only our own names reach the SQL (created by `new_name`, or checked here).
    if created_at(name).is_none() {
        return;
    }
    if let Ok(mut admin) = PgConnection::connect(admin_url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_creation_time() {
        let name = new_name(1_700_000_000);
        assert!(name.starts_with("fe_test_1700000000_"));
        assert!(
            name.len() <= 63,
            "PostgreSQL truncates identifiers over 63 bytes"
        );
        assert_eq!(created_at(&name), Some(1_700_000_000));
    }

    #[test]
    fn foreign_names_are_never_ours() {
        for name in [
            "postgres",
            "fe_test_",
            "fe_test_abc_0123",
            "fe_test_1700000000",
            "fe_test_1700000000_",
            "fe_test_1700000000_xyz",
            "fe_test_+1700000000_ab",
            "fe_test_1700000000_ab; DROP TABLE x",
            "file_engine",
        ] {
            assert_eq!(created_at(name), None, "{name}");
        }
    }

    #[test]
    fn database_is_replaced_in_urls() {
        let cases = [
            ("postgres://u@h:5432/postgres", "postgres://u@h:5432/t"),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/t?sslmode=disable",
            ),
            ("postgres://u@h:5432", "postgres://u@h:5432/t"),
            ("postgresql://h?user=x", "postgresql://h/t?user=x"),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "t"), expected, "{url}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:1/d"),
            "postgres://u:***@h:1/d"
        );
        assert_eq!(redact("postgres://u@h:1/d"), "postgres://u@h:1/d");
        assert_eq!(redact("postgres://h:5432/d"), "postgres://h:5432/d");
    }

    #[tokio::test]
    async fn a_created_database_is_usable_and_gone_after_drop() {
        let db = TestDb::create().await.unwrap();
        let pool = db.pool().await.unwrap();
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(one, 1);
        let current: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(current, db.name);

        let name = db.name.clone();
        // The pool is still open: FORCE must end its sessions.
        drop(db);
        let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(&name)
                .fetch_optional(&mut admin)
                .await
                .unwrap();
        assert_eq!(exists, None, "{name} should have been dropped");
    }

    #[tokio::test]
    async fn old_leftovers_are_swept_and_fresh_ones_kept() {
        let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
        let old = new_name(unix_now() - LEFTOVER_AGE.as_secs() - 60);
        let fresh = new_name(unix_now() - 60);
        for name in [&old, &fresh] {
            sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE template0"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        // A process sweeps only once; call the sweep itself, bypassing the once-guard.
        sweep_leftovers(&mut admin).await;
        let remaining: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname = ANY($1)")
                .bind(vec![old.clone(), fresh.clone()])
                .fetch_all(&mut admin)
                .await
                .unwrap();
        drop_database(&admin_url(), &fresh).await;
        assert_eq!(remaining, vec![fresh]);
    }
}
