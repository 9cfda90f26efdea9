//! ACL decision latency: 10,000 rules spread over a tree, decisions on 32-segment paths for
//! principals with a few roles. Target from issue 4: p99 under 50 µs in-process.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use events::acl::{AclIndex, AclRule, Effect, Permission, Subject};
use events::{FilePath, Principal, TenantId};
use rand::{Rng, SeedableRng};

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

pub fn run(samples: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let index = AclIndex::from_rules((0..RULES).map(|_| random_rule(&mut rng)));
    let tenant = TenantId::parse("bench").expect("a constant, valid tenant id");
    let principals: Vec<Principal> = (0..50)
        .filter_map(|i| {
            Principal::new(
                format!("u{i}"),
                tenant.clone(),
                vec![format!("r{}", i % 10), format!("r{}", (i + 3) % 10)],
            )
            .ok()
        })
        .collect();
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
    let (_, p99) = super::report(
        &format!("acl decide ({RULES} rules, depth {DEPTH})"),
        &mut times,
    );
    println!(
        "  allowed {allowed}/{samples}; target p99 < 50µs: {}",
        if p99 < Duration::from_micros(50) {
            "met"
        } else {
            "MISSED"
        }
    );
}
