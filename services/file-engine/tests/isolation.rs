//! Isolation between tenants: no command of one tenant can leave the read models a state they
//! cannot hold (path limits over whole subtrees), and a commit that cannot be projected parks
//! only its own tenant.

mod support;

use std::time::Duration;

use events::partition::partition_of_str;
use events::task::{FileCommand, TaskEvent, TaskSpec};
use events::{FilePath, TenantId};
use file_engine::projection_cli::{self, Resumed};
use file_engine::{start, Role};
use platform::config::Config;
use platform::projection;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;
use uuid::Uuid;

/// A 200-byte directory name with a distinguishing suffix.
fn long(n: u8) -> String {
    format!("{}{n}", "d".repeat(199))
}

/// The trigger of issue 14: directories with long names moved into each other. Each path in
/// the request is valid, but the subtree would land over 1024 bytes at the target. The task
/// fails with `path_invalid` when the catalogue did not know the subtree at request time, the
/// request is refused with 400 once it does, and another tenant's work goes on throughout.
#[tokio::test]
async fn nested_move_over_the_path_limit_fails_with_a_stable_code_and_others_go_on() {
    // No worker yet: the deep tree is still only requested when the move is accepted, so the
    // request-time check cannot see it and the execution-time check must catch it.
    let app = TestApp::spawn_with(&[Role::Api, Role::Projector], &[]).await;
    let t = app.admin("deep");
    let other = app.admin("bystander");
    let deep = format!("/{}/{}/{}/{}", long(1), long(2), long(3), long(6));
    let target_parent = format!("/{}/{}", long(4), long(5));
    let target = format!("{target_parent}/{}", long(1));
    let mkdir_deep = app
        .submit(&t, json!({"op": "mkdir", "path": deep, "parents": true}))
        .await;
    let mkdir_target = app
        .submit(
            &t,
            json!({"op": "mkdir", "path": target_parent, "parents": true}),
        )
        .await;
    let moved = app
        .submit(
            &t,
            json!({"op": "move", "from": format!("/{}", long(1)), "to": target}),
        )
        .await;
    let workers = start(&app.platform, &[Role::Worker]).await.expect("worker");

    assert_eq!(app.wait_task(&t, &mkdir_deep).await["status"], "succeeded");
    assert_eq!(
        app.wait_task(&t, &mkdir_target).await["status"],
        "succeeded"
    );
    let failed = app.wait_task(&t, &moved).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "path_invalid", "{failed}");
    // Nothing moved, on disk or in the catalogue.
    assert!(app.is_dir("deep", &deep).await);
    let (status, _) = app
        .get_json(&t, &format!("/v1/stat{}", url_path(&target)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another tenant's commands keep completing.
    let done = app
        .run(
            &other,
            json!({"op": "mkdir", "path": "/still/here", "parents": true}),
        )
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // Now the catalogue knows the subtree: the same move and a copy are refused at once.
    for op in ["move", "copy"] {
        let body = json!({"op": op, "from": format!("/{}", long(1)), "to": target});
        let resp = app.post_command(&t, &body, None).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{op}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "path_invalid", "{problem}");
        assert!(!problem["detail"].as_str().unwrap().contains(&long(1)));
    }
    // A move of the same subtree that fits is accepted and succeeds.
    let fits = app
        .run(
            &t,
            json!({"op": "move", "from": format!("/{}", long(1)), "to": "/short"}),
        )
        .await;
    assert_eq!(fits["status"], "succeeded", "{fits}");
    workers.shutdown().await;
}

/// The schema enforces the domain's limits itself: a path over 1024 bytes cannot be stored,
/// whatever code tries.
#[tokio::test]
async fn the_schema_refuses_paths_the_domain_refuses() {
    let app = TestApp::spawn_with(&[], &[]).await;
    let too_long = format!(
        "/{}/{}/{}/{}/{}/{}",
        long(1),
        long(2),
        long(3),
        long(4),
        long(5),
        long(6)
    );
    assert!(too_long.len() > 1024);
    let err = sqlx::query(
        "INSERT INTO entries (tenant, path, parent, name, kind, status, modified_at, updated_seq)
         VALUES ('acme', $1, '/', 'x', 'dir', 'available', now(), 1)",
    )
    .bind(&too_long)
    .execute(&app.platform.pool)
    .await
    .expect_err("an over-long path was stored");
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("23514"), "{err}");
    let name_too_long = sqlx::query(
        "INSERT INTO entries (tenant, path, parent, name, kind, status, modified_at, updated_seq)
         VALUES ('acme', '/x', '/', $1, 'dir', 'available', now(), 1)",
    )
    .bind("n".repeat(256))
    .execute(&app.platform.pool)
    .await;
    assert!(name_too_long.is_err());
}

/// Percent-encodes each segment of a path for use in a URL.
fn url_path(path: &str) -> String {
    path.split('/')
        .map(|s| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// Publishes one task commit straight into the log, as a buggy or older writer could have:
/// no API validation, no worker. Returns its stream sequence.
async fn inject_task_commit(app: &TestApp, tenant: &str, events: Vec<TaskEvent>) -> u64 {
    use cqrs_es::DomainEvent;
    let Some(TaskEvent::TaskRequested { task_id, .. }) = events.first() else {
        panic!("a new task starts with TaskRequested");
    };
    let task_id = *task_id;
    let stored = events
        .iter()
        .map(|e| (e.event_type(), serde_json::to_value(e).unwrap()))
        .collect();
    app.inject_task_commit(tenant, task_id, stored).await
}

fn requested(tenant: &str, command: FileCommand) -> TaskEvent {
    TaskEvent::TaskRequested {
        task_id: Uuid::now_v7(),
        tenant: TenantId::parse(tenant).unwrap(),
        principal: "root".into(),
        roles: vec!["admin".into()],
        spec: TaskSpec::Command(command),
        idempotency_key: None,
        body_hash: None,
        requested_at: chrono::Utc::now(),
    }
}

/// A tenant in the same partition as `tenant` (of the default 8), so the test shows that
/// parking isolates tenants, not partitions.
fn neighbour_of(tenant: &str) -> String {
    let own = partition_of_str(tenant, 8);
    (0..)
        .map(|i| format!("neighbour-{i}"))
        .find(|t| partition_of_str(t, 8) == own)
        .unwrap()
}

/// Issue 14's second check: an unprojectable commit written straight into the log parks its
/// own tenant (row, metric, status), that tenant gets 503 for what needs the projection,
/// its later commits wait in order, every other tenant (even in the same partition) keeps
/// completing commands, and after a fix `resume` catches the tenant up in order.
#[tokio::test]
async fn an_unprojectable_commit_parks_only_its_tenant_until_resumed() {
    let app = TestApp::spawn().await;
    let poisoned = "poisoned";
    let healthy = neighbour_of(poisoned);
    let (pt, ht) = (app.admin(poisoned), app.admin(&healthy));
    let deep = format!("/{}/{}/{}/{}", long(1), long(2), long(3), long(6));
    let parent = format!("/{}/{}", long(4), long(5));
    for path in [&deep, &parent] {
        let done = app
            .run(&pt, json!({"op": "mkdir", "path": path, "parents": true}))
            .await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    // A move whose subtree cannot fit at the target, recorded as done: the catalogue cannot
    // hold the result.
    let from = FilePath::parse(&format!("/{}", long(1))).unwrap();
    let to = FilePath::parse(&format!("{parent}/{}", long(1))).unwrap();
    let mv = FileCommand::Move {
        from: from.clone(),
        to: to.clone(),
        overwrite: false,
    };
    let poison_seq = inject_task_commit(
        &app,
        poisoned,
        vec![
            requested(poisoned, mv),
            TaskEvent::TaskStarted { attempt: 1 },
            TaskEvent::EntryMoved {
                within: None,
                from,
                to,
                overwrite: false,
            },
            TaskEvent::TaskSucceeded,
        ],
    )
    .await;
    let pool = app.platform.pool.clone();
    support::eventually("the tenant to be parked", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            projection::parked_tenant(&pool, "poisoned")
                .await
                .unwrap()
                .is_some()
        }
    })
    .await;
    let row = projection::parked_tenant(&pool, poisoned)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.seq as u64, poison_seq);
    assert!(row.reason.contains("entries_path_len"), "{}", row.reason);

    // A later commit of the parked tenant waits (held, in order): a valid mkdir task.
    let after = Uuid::now_v7();
    let later = TaskEvent::TaskRequested {
        task_id: after,
        tenant: TenantId::parse(poisoned).unwrap(),
        principal: "root".into(),
        roles: vec!["admin".into()],
        spec: TaskSpec::Command(FileCommand::Mkdir {
            path: FilePath::parse("/after").unwrap(),
            parents: false,
        }),
        idempotency_key: None,
        body_hash: None,
        requested_at: chrono::Utc::now(),
    };
    inject_task_commit(&app, poisoned, vec![later]).await;

    // The parked tenant's requests that need the projection: 503 saying so, nothing recorded.
    let resp = app
        .post_command(&pt, &json!({"op": "mkdir", "path": "/refused"}), None)
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "unavailable");
    assert!(
        problem["detail"].as_str().unwrap().contains("parked"),
        "{problem}"
    );
    let grant = app
        .http
        .post(app.url("/v1/acl/rules"))
        .bearer_auth(&pt)
        .json(&json!({"subject": "user:bob", "path": "/", "permissions": ["read"], "effect": "allow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = app
        .get_json(&pt, &format!("/v1/tasks/{after}?wait=1"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // Everyone else goes on, including a tenant of the same partition.
    for i in 0..3 {
        let done = app
            .run(&ht, json!({"op": "mkdir", "path": format!("/ok{i}")}))
            .await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let grant = app
        .http
        .post(app.url("/v1/acl/rules"))
        .bearer_auth(&ht)
        .json(&json!({"subject": "user:bob", "path": "/", "permissions": ["read"], "effect": "allow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), StatusCode::CREATED);
    // The gauge follows the parked tenants on the projector's ownership tick (every second).
    support::eventually(
        "the parked-tenants gauge",
        Duration::from_secs(10),
        || async {
            let metrics = app.http.get(app.url("/metrics")).send().await;
            match metrics {
                Ok(resp) => resp
                    .text()
                    .await
                    .is_ok_and(|m| m.contains("fe_projection_parked_tenants 1")),
                Err(_) => false,
            }
        },
    )
    .await;

    // The operator's view.
    let config = Config::from_map(&app.env(&[])).unwrap();
    let status = projection_cli::status(config.clone()).await.unwrap();
    assert_eq!(status["parked"][0]["tenant"], poisoned, "{status}");
    assert_eq!(status["partitions"].as_array().unwrap().len(), 8);

    // Resuming without a fix: the same commit fails again, the tenant stays parked there.
    match projection_cli::resume(config.clone(), poisoned, Duration::from_secs(30))
        .await
        .unwrap()
    {
        Resumed::StillParked(row) => {
            assert_eq!(row.seq as u64, poison_seq);
            assert_eq!(row.attempts, 2);
        }
        _ => panic!("a resume without a fix must leave the tenant parked"),
    }
    // The fix (here: an operator lifting the limit the commit breaks), then resume: the
    // tenant catches up in order, and its held task runs.
    sqlx::query(
        "ALTER TABLE entries DROP CONSTRAINT entries_path_len, DROP CONSTRAINT entries_parent_len",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(matches!(
        projection_cli::resume(config, poisoned, Duration::from_secs(30))
            .await
            .unwrap(),
        Resumed::CaughtUp
    ));
    let held = app.wait_task(&pt, &after.to_string()).await;
    assert_eq!(held["status"], "succeeded", "{held}");
    let (status, stat) = app
        .get_json(
            &pt,
            &format!("/v1/stat{}", url_path(&format!("{parent}/{}", long(1)))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stat}");
    let again = app
        .run(&pt, json!({"op": "mkdir", "path": "/accepted-again"}))
        .await;
    assert_eq!(again["status"], "succeeded", "{again}");
}

/// The worker's "earlier open task on an overlapping path?" is answered from the path index
/// (`task_paths_open`), whatever the size of the tenant's backlog, and answers right for
/// ancestors, descendants, the same path, siblings sharing a prefix and other tenants.
#[tokio::test]
async fn overlap_check_is_an_indexed_lookup_not_a_backlog_scan() {
    let app = TestApp::spawn_with(&[], &[]).await;
    let pool = &app.platform.pool;
    // A large backlog of unrelated open tasks, plus a few on interesting paths.
    sqlx::query(
        "INSERT INTO task_paths (tenant, task_id, path, queued_seq, open)
         SELECT 'busy', gen_random_uuid(), '/backlog/' || i, i, true
         FROM generate_series(100, 30099) AS i",
    )
    .execute(pool)
    .await
    .unwrap();
    for (path, seq, open) in [
        ("/a", 5, true),
        ("/x/y/z", 7, true),
        ("/ab", 8, true),
        ("/done", 9, false),
    ] {
        sqlx::query(
            "INSERT INTO task_paths (tenant, task_id, path, queued_seq, open)
             VALUES ('busy', gen_random_uuid(), $1, $2, $3)",
        )
        .bind(path)
        .bind(seq as i64)
        .bind(open)
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE task_paths")
        .execute(pool)
        .await
        .unwrap();
    let busy = TenantId::parse("busy").unwrap();
    let other = TenantId::parse("other").unwrap();
    let mkdir = |p: &str| {
        TaskSpec::Command(FileCommand::Mkdir {
            path: FilePath::parse(p).unwrap(),
            parents: true,
        })
    };
    let mv = |from: &str, to: &str| {
        TaskSpec::Command(FileCommand::Move {
            from: FilePath::parse(from).unwrap(),
            to: FilePath::parse(to).unwrap(),
            overwrite: false,
        })
    };
    let blocker = |tenant: TenantId, seq: u64, spec: TaskSpec| async move {
        worker::ordering::blocking_task(pool, &tenant, Uuid::now_v7(), seq, &spec)
            .await
            .unwrap()
    };
    let blocked = |tenant: TenantId, seq: u64, spec: TaskSpec| async move {
        blocker(tenant, seq, spec).await.is_some()
    };
    assert!(blocked(busy.clone(), 50, mkdir("/a/b/c")).await, "ancestor");
    assert!(blocked(busy.clone(), 50, mkdir("/x")).await, "descendant");
    assert!(blocked(busy.clone(), 50, mkdir("/ab")).await, "same path");
    assert!(
        blocked(busy.clone(), 50, mv("/q", "/x/y")).await,
        "target overlaps"
    );
    assert!(!blocked(busy.clone(), 50, mkdir("/ac")).await, "sibling");
    assert!(
        !blocked(busy.clone(), 50, mkdir("/done/x")).await,
        "terminal task"
    );
    assert!(
        !blocked(busy.clone(), 4, mkdir("/a")).await,
        "only earlier tasks count"
    );
    assert!(!blocked(other, 50, mkdir("/a")).await, "other tenant");

    // The task it waits for is the latest earlier one on its path, so a chain of tasks on one
    // path is woken link by link; one that is not earlier is never named.
    let (older, latest) = (Uuid::now_v7(), Uuid::now_v7());
    for (id, seq) in [(older, 20i64), (latest, 30)] {
        sqlx::query(
            "INSERT INTO task_paths (tenant, task_id, path, queued_seq, open)
             VALUES ('busy', $1, '/chain', $2, true)",
        )
        .bind(id)
        .bind(seq)
        .execute(pool)
        .await
        .unwrap();
    }
    assert_eq!(
        blocker(busy.clone(), 50, mkdir("/chain")).await,
        Some(latest)
    );
    assert_eq!(
        blocker(busy.clone(), 25, mkdir("/chain")).await,
        Some(older)
    );
    assert_eq!(
        blocker(busy.clone(), 50, mkdir("/chain/x")).await,
        Some(latest)
    );

    // The plan uses the partial path index and never reads the whole backlog.
    let plan: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN {}", worker::ordering::OVERLAP_SQL))
            .bind("busy")
            .bind(50i64)
            .bind(Uuid::now_v7())
            .bind(vec!["/".to_owned(), "/a".to_owned(), "/a/b".to_owned()])
            .bind(vec!["/a/b/".to_owned()])
            .bind(vec!["/a/b0".to_owned()])
            .fetch_all(pool)
            .await
            .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("task_paths_open"), "{plan}");
    assert!(!plan.contains("Seq Scan on task_paths"), "{plan}");
}

/// The turn check runs on connections of its own that keep one generic plan for it
/// (`worker::ordering::OrderingPool`). That plan must be the index plan even when it was made
/// while `task_paths` looked small (statistics of a young deployment), or every check would
/// read the whole table once it has grown. The same generic plan on an ordinary connection
/// reads `task_paths` sequentially: the test sets up the trap the pool's settings avoid.
#[tokio::test]
async fn the_turn_check_keeps_its_index_plan_when_planned_on_small_statistics() {
    let db = testkit::postgres::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    platform::db::migrate(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO task_paths (tenant, task_id, path, queued_seq, open)
         SELECT 't', gen_random_uuid(), '/x' || i, i, true FROM generate_series(1, 30) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    for table in ["task_paths", "tasks"] {
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    async fn generic_plan(conn: &mut sqlx::PgConnection) -> String {
        sqlx::query(&format!(
            "PREPARE overlap(text, bigint, uuid, text[], text[], text[]) AS {}",
            worker::ordering::OVERLAP_SQL
        ))
        .execute(&mut *conn)
        .await
        .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN EXECUTE overlap('t', 50, gen_random_uuid(), '{/,/a,/a/b}', '{/a/b/}', '{/a/b0}')",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        plan.join("\n")
    }

    let ordering = worker::ordering::OrderingPool::beside(&pool);
    let mut own = ordering.0.acquire().await.unwrap();
    let plan = generic_plan(&mut own).await;
    assert!(plan.contains("task_paths_open"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");

    let mut ordinary = pool.acquire().await.unwrap();
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *ordinary)
        .await
        .unwrap();
    let trap = generic_plan(&mut ordinary).await;
    assert!(trap.contains("Seq Scan on task_paths"), "{trap}");
}
