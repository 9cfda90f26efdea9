//! Infrastructure killed under a command load: the nats-server of a single node (fsync on
//! every write), the leader of the event stream in the 3-node cluster, and PostgreSQL. No
//! acknowledged command may be lost or run twice; projections resume from their checkpoint
//! and equal a replay of the log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use testkit::role::RoleProcess;

use super::load::Load;
use super::rig::{urlencode, Database, Nats, Rig, RigSpec, BINARY};
use super::Form;

const STEP: Duration = Duration::from_secs(60);

fn batch(form: Form) -> usize {
    match form {
        Form::Quick => 25,
        Form::Full => 60,
    }
}

/// One node with `sync_interval: always`, killed with SIGKILL and restarted over its store.
pub async fn nats_restart(form: Form) {
    let mut rig = Rig::start(RigSpec::default()).await;
    let Nats::Single(server) = &rig.nats else {
        unreachable!()
    };
    assert!(
        server.syncs_always(),
        "the single node must fsync every write"
    );
    let token = rig.admin("acme");
    let load = Load::start(&rig, &token, "/nats", 4);
    let rounds = if form == Form::Full { 3 } else { 1 };
    for _ in 0..rounds {
        load.progress
            .wait_more_acked(batch(form), STEP, "acks before the kill")
            .await;
        if let Nats::Single(server) = &mut rig.nats {
            server.stop().await;
        }
        load.progress
            .wait_more_refused(3, STEP, "requests refused while NATS is down")
            .await;
        if let Nats::Single(server) = &mut rig.nats {
            server.restart().await.expect("restart nats-server");
        }
        load.progress
            .wait_more_acked(batch(form), STEP, "acks after the restart")
            .await;
    }
    let tally = load.finish(&rig, &token, form.patience()).await;
    tally.report("nats_restart");
}

/// Three nodes, the event stream at replicas 3; its leader killed under load and brought back.
pub async fn cluster_leader(form: Form) {
    let mut rig = Rig::start(RigSpec {
        cluster: true,
        ..RigSpec::default()
    })
    .await;
    let stream = platform::streams::EVENTS_STREAM;
    let Nats::Cluster(cluster) = &mut rig.nats else {
        unreachable!()
    };
    cluster
        .wait_stream_current(stream, STEP)
        .await
        .expect("replicas current");
    let token = rig.admin("acme");
    let load = Load::start(&rig, &token, "/cluster", 4);
    let rounds = if form == Form::Full { 3 } else { 1 };
    for round in 0..rounds {
        load.progress
            .wait_more_acked(batch(form), STEP, "acks before the kill")
            .await;
        let Nats::Cluster(cluster) = &mut rig.nats else {
            unreachable!()
        };
        let leader = cluster.stream_leader(stream).await.expect("stream leader");
        eprintln!(
            "cluster_leader: round {round}: killing {}",
            cluster.name(leader)
        );
        cluster.kill(leader).await;
        // The other two keep a quorum: commands are acknowledged while the old leader is down.
        load.progress
            .wait_more_acked(batch(form), STEP, "acks without the old leader")
            .await;
        let Nats::Cluster(cluster) = &mut rig.nats else {
            unreachable!()
        };
        assert_ne!(
            cluster.stream_leader(stream).await.expect("new leader"),
            leader
        );
        cluster
            .restart(leader)
            .await
            .expect("restart the old leader");
        cluster
            .wait_stream_current(stream, STEP)
            .await
            .expect("the old leader catches up");
        load.progress
            .wait_more_acked(batch(form), STEP, "acks after the return")
            .await;
    }
    let tally = load.finish(&rig, &token, form.patience()).await;
    tally.report("cluster_leader");
}

/// A private PostgreSQL crashed (`-m immediate`) and started again under load; then the read
/// models, seen through the API, equal a replay of the log into a fresh database.
pub async fn postgres_restart(form: Form) {
    let mut rig = Rig::start(RigSpec {
        private_postgres: true,
        ..RigSpec::default()
    })
    .await;
    let token = rig.admin("acme");
    // Paced: judging replays the whole log and compares every audit event through two APIs,
    // which grows with the commands sent (unpaced, the quick form once sent 4,046 commands).
    let load = Load::start_paced(&rig, &token, "/pg", 4, Duration::from_millis(50));
    let rounds = if form == Form::Full { 3 } else { 1 };
    for _ in 0..rounds {
        load.progress
            .wait_more_acked(batch(form), STEP, "acks before the crash")
            .await;
        let Database::Private(pg, _) = &mut rig.db else {
            unreachable!()
        };
        pg.crash().expect("crash PostgreSQL");
        // Commands still reach the log while the read models are down (the API may refuse
        // some: it reads ACLs and idempotency from PostgreSQL). Give the outage some requests.
        let _ = tokio::time::timeout(
            Duration::from_secs(3),
            load.progress
                .wait_more_refused(3, STEP, "requests during the outage"),
        )
        .await;
        let Database::Private(pg, _) = &mut rig.db else {
            unreachable!()
        };
        pg.start().await.expect("start PostgreSQL again");
        load.progress
            .wait_more_acked(batch(form), STEP, "acks after the restart")
            .await;
    }
    let tally = load.finish(&rig, &token, form.patience()).await;

    // Replay the log into a fresh database and serve it from a second API.
    let Database::Private(pg, _) = &rig.db else {
        unreachable!()
    };
    let replay_url = pg
        .create_database("fe_replay")
        .await
        .expect("replay database");
    let replay_env = rig.env(&[("FE_DATABASE_URL", replay_url.clone())]);
    let status = std::process::Command::new(BINARY)
        .arg("replay")
        .env_clear()
        .envs(&replay_env)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run file-engine replay");
    assert!(status.success(), "file-engine replay failed");
    let port = testkit::free_port().expect("port");
    let mut api_env = replay_env;
    api_env.insert("FE_HTTP_ADDR".into(), format!("127.0.0.1:{port}"));
    let _replayed_api = RoleProcess::spawn(BINARY, "api", api_env).expect("replay api");
    let replayed = format!("http://127.0.0.1:{port}");
    testkit::role::wait_ready(&replayed, STEP)
        .await
        .expect("replay api ready");

    // The live projection may still be applying the last commits: compare until equal.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live = audit_trail(&rig, &rig.base, &token).await;
        let rebuilt = audit_trail(&rig, &replayed, &token).await;
        let gapless = live.keys().copied().eq(1..=live.len() as u64);
        if live == rebuilt && gapless && !live.is_empty() {
            eprintln!(
                "postgres_restart: {} audit events equal to the replay, seq gapless",
                live.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projection differs from a replay of the log (live {} events, replay {}, gapless {gapless})",
            live.len(),
            rebuilt.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let live_tree = rig.tree(&token, "/pg").await;
    let rebuilt_tree = rig.tree_at(&replayed, &token, "/pg").await;
    assert_eq!(live_tree, rebuilt_tree, "catalogue differs from a replay");
    tally.report("postgres_restart");
}

/// The tenant's audit trail through `base`: seq → (event id, type).
async fn audit_trail(rig: &Rig, base: &str, token: &str) -> BTreeMap<u64, (String, String)> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/audit?limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let Ok(resp) = rig.http.get(&url).bearer_auth(token).send().await else {
            return BTreeMap::new();
        };
        if resp.status() != StatusCode::OK {
            return BTreeMap::new();
        }
        let page: Value = resp.json().await.unwrap_or(Value::Null);
        for event in page["events"].as_array().cloned().unwrap_or_default() {
            let seq = event["seq"].as_u64().unwrap_or(0);
            let id = event["id"].as_str().unwrap_or_default().to_owned();
            let kind = event["type"].as_str().unwrap_or_default().to_owned();
            out.insert(seq, (id, kind));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}
