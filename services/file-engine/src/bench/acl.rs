//! ACL decision latency: 10,000 rules spread over a tree, decisions on 32-segment paths for
//! principals with a few roles.
//!
//! - in-process: the index alone (target p99 < 10 µs);
//! - whole request path: the same rules granted through the ACL admin API, then a non-admin
//!   asks `GET /v1/stat/<32-segment path>` over HTTP (JWT verify, rule version lookup,
//!   decision, catalogue read), one request at a time; target p99 < 1 ms. Baseline: the same
//!   client's `GET /healthz` (the HTTP floor).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use events::acl::{AclIndex, AclRule, Effect, Permission, Subject};
use events::{FilePath, Principal, TenantId};
use rand::{Rng, SeedableRng};

use super::env::{self, Sync};
use super::load::{closed_loop, Stop};
use super::report::{FigureBuilder, Latency, Report, Target};
use super::Options;
use crate::Role;

const RULES: usize = 10_000;
const DEPTH: usize = 32;

fn random_path(rng: &mut impl Rng, depth: usize) -> FilePath {
    let mut p = String::new();
    for _ in 0..depth {
        p.push_str(&format!("/s{}", rng.random_range(0..4)));
    }
    FilePath::parse(&p).unwrap_or_else(|_| FilePath::root())
}

fn random_rule(rng: &mut impl Rng) -> AclRule {
    let subject = match rng.random_range(0..3) {
        0 => Subject::User(format!("u{}", rng.random_range(0..50))),
        1 => Subject::Role(format!("r{}", rng.random_range(0..10))),
        _ => Subject::Everyone,
    };
    let permissions: BTreeSet<Permission> = Permission::ALL
        .iter()
        .copied()
        .filter(|_| rng.random_bool(0.4))
        .collect();
    AclRule {
        rule_id: uuid::Uuid::from_u128(rng.random()),
        subject,
        path: {
            let depth = rng.random_range(0..=DEPTH);
            random_path(rng, depth)
        },
        permissions,
        effect: if rng.random_bool(0.01) {
            Effect::Deny
        } else {
            Effect::Allow
        },
    }
}

/// The in-process figure.
fn in_process(report: &mut Report, opts: &Options) {
    let samples = if opts.quick { 20_000 } else { 200_000 };
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let index = AclIndex::from_rules((0..RULES).map(|_| random_rule(&mut rng)));
    let principals = principals();
    let paths: Vec<FilePath> = (0..1_000).map(|_| random_path(&mut rng, DEPTH)).collect();
    let mut times = Vec::with_capacity(samples);
    let mut allowed = 0usize;
    for i in 0..samples {
        let principal = &principals[i % principals.len()];
        let path = &paths[(i * 7) % paths.len()];
        let permission = Permission::ALL[i % Permission::ALL.len()];
        let start = Instant::now();
        let decision = index.decide(principal, permission, path);
        times.push(start.elapsed());
        allowed += decision.allowed as usize;
    }
    let latency = Latency::of(&mut times);
    report.add(
        FigureBuilder::new(
            "acl",
            format!("in-process decision p99, {RULES} rules"),
            "µs",
        )
        .measured(latency.map_or(f64::INFINITY, |l| l.p99_us as f64), latency)
        .conditions(1, 0, samples)
        .target(Target::AtMost { value: 10.0 })
        .note(format!("depth {DEPTH}; allowed {allowed}/{samples}"))
        .build(),
        opts.json,
    );
}

fn principals() -> Vec<Principal> {
    let tenant = TenantId::parse("bench").expect("a constant, valid tenant id");
    (0..50)
        .filter_map(|i| {
            Principal::new(
                format!("u{i}"),
                tenant.clone(),
                vec![format!("r{}", i % 10), format!("r{}", (i + 3) % 10)],
            )
            .ok()
        })
        .collect()
}

pub async fn run(report: &mut Report, opts: &Options) -> anyhow::Result<()> {
    in_process(report, opts);
    over_http(report, opts).await
}

/// The whole-request-path figure.
async fn over_http(report: &mut Report, opts: &Options) -> anyhow::Result<()> {
    let samples = if opts.quick { 1_000 } else { 10_000 };
    // Every grant loads the tenant's one ACL aggregate (its whole history) and waits for its
    // projection, so grants run one at a time (concurrent ones only conflict) and --quick
    // grants fewer to stay under 2 minutes.
    let rule_count = if opts.quick { 200 } else { RULES };
    let app = env::spawn(Sync::Always, &[Role::Api, Role::Projector], false, &[]).await?;
    let admin = app.token("root", "bench", &["admin"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let rules: Arc<Vec<serde_json::Value>> = Arc::new(
        (0..rule_count)
            .map(|_| {
                let rule = random_rule(&mut rng);
                let mut permissions: Vec<&str> =
                    rule.permissions.iter().map(|p| p.as_str()).collect();
                if permissions.is_empty() {
                    permissions.push("read");
                }
                serde_json::json!({
                    "subject": rule.subject.to_string(),
                    "path": rule.path.as_str(),
                    "permissions": permissions,
                    "effect": if rule.effect == Effect::Allow { "allow" } else { "deny" },
                })
            })
            .collect(),
    );
    let (http, base) = (app.http.clone(), app.base.clone());
    let granted = closed_loop(1, Stop::Count(rule_count), move |i| {
        let (http, base, admin, rules) = (http.clone(), base.clone(), admin.clone(), rules.clone());
        async move {
            let resp = http
                .post(format!("{base}/v1/acl/rules"))
                .bearer_auth(&admin)
                .json(&rules[i])
                .send()
                .await?;
            let status = resp.status();
            anyhow::ensure!(status.as_u16() == 201, "grant answered {status}");
            Ok(())
        }
    })
    .await;
    anyhow::ensure!(
        granted.errors == 0,
        "granting the bench rules failed: {}",
        granted.error_note()
    );
    let user = app.token("u1", "bench", &["r1", "r4"]);
    let paths: Vec<String> = (0..1_000)
        .map(|_| random_path(&mut rng, DEPTH).as_str().to_owned())
        .collect();
    let (mut stat, mut floor) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    let (mut allowed, mut denied) = (0usize, 0usize);
    for i in 0..samples + 100 {
        let started = Instant::now();
        let resp = app
            .http
            .get(app.url(&format!("/v1/stat{}", paths[i % paths.len()])))
            .bearer_auth(&user)
            .send()
            .await?;
        let status = resp.status().as_u16();
        resp.bytes().await?;
        let took = started.elapsed();
        anyhow::ensure!(matches!(status, 200 | 403 | 404), "stat answered {status}");
        let started = Instant::now();
        app.http
            .get(app.url("/healthz"))
            .send()
            .await?
            .bytes()
            .await?;
        let floor_took = started.elapsed();
        // The first requests warm the connection and load the rules into the cache.
        if i >= 100 {
            stat.push(took);
            floor.push(floor_took);
            if status == 403 {
                denied += 1;
            } else {
                allowed += 1;
            }
        }
    }
    let latency = Latency::of(&mut stat);
    let floor_latency = Latency::of(&mut floor);
    report.add(
        FigureBuilder::new(
            "acl",
            format!("non-admin request p99, {rule_count} rules"),
            "µs",
        )
        .measured(latency.map_or(f64::INFINITY, |l| l.p99_us as f64), latency)
        .baseline(
            "GET /healthz p99 (µs)",
            floor_latency.map_or(0.0, |l| l.p99_us as f64),
            floor_latency,
        )
        .conditions(1, 0, samples)
        .target(Target::AtMost { value: 1000.0 })
        .note(format!(
            "GET /v1/stat on {DEPTH}-segment paths: {allowed} allowed (404/200), {denied} denied"
        ))
        .build(),
        opts.json,
    );
    app.stop().await;
    Ok(())
}
