//! What each operation needs (API.md "Authorization (ACL)" and "Which path is checked"),
//! through `authorize`: single permissions, `list` or `read`, composite move/copy, and the
//! admin bypass.

use std::collections::BTreeSet;

use events::acl::{authorize, Access, AclIndex, AclRule, Denied, Effect, Permission, Subject};
use events::{FilePath, Principal, TenantId};
use uuid::Uuid;

fn p(s: &str) -> FilePath {
    FilePath::parse(s).unwrap()
}

fn principal(sub: &str, roles: &[&str]) -> Principal {
    let roles = roles.iter().map(|r| r.to_string()).collect();
    Principal::new(sub, TenantId::parse("acme").unwrap(), roles).unwrap()
}

fn bob() -> Principal {
    principal("bob", &["editors"])
}

fn rule(n: u128, subject: &str, path: &str, perms: &[Permission], effect: Effect) -> AclRule {
    AclRule {
        rule_id: Uuid::from_u128(n),
        subject: Subject::parse(subject).unwrap(),
        path: p(path),
        permissions: perms.iter().copied().collect::<BTreeSet<_>>(),
        effect,
    }
}

fn allow(n: u128, subject: &str, path: &str, perms: &[Permission]) -> AclRule {
    rule(n, subject, path, perms, Effect::Allow)
}

fn deny(n: u128, subject: &str, path: &str, perms: &[Permission]) -> AclRule {
    rule(n, subject, path, perms, Effect::Deny)
}

use Permission::*;

fn denied(permission: Permission, path: &str) -> Result<(), Denied> {
    Err(Denied {
        permission,
        path: p(path),
    })
}

#[test]
fn single_permission_operations() {
    let x = p("/d/x");
    let cases: [(Access<'_>, Permission); 6] = [
        (Access::Mkdir(&x), Mkdir),
        (Access::Delete(&x), Delete),
        (Access::Upload(&x), Write),
        (Access::Download(&x), Read),
        (Access::List(&x), List),
        (Access::LinkCreate(&x), Read),
    ];
    for (access, needed) in cases {
        let none = AclIndex::new();
        assert_eq!(
            authorize(&none, &bob(), access),
            denied(needed, "/d/x"),
            "{access:?}"
        );
        let others: Vec<Permission> = Permission::ALL
            .into_iter()
            .filter(|q| *q != needed)
            .collect();
        let wrong = AclIndex::from_rules([allow(1, "user:bob", "/", &others)]);
        assert!(authorize(&wrong, &bob(), access).is_err(), "{access:?}");
        let right = AclIndex::from_rules([allow(1, "user:bob", "/d", &[needed])]);
        assert_eq!(authorize(&right, &bob(), access), Ok(()), "{access:?}");
    }
}

#[test]
fn stat_and_list_entry_need_list_or_read() {
    let x = p("/d/x");
    for access in [Access::Stat(&x), Access::ListEntry(&x)] {
        assert_eq!(
            authorize(&AclIndex::new(), &bob(), access),
            denied(List, "/d/x")
        );
        for perm in [List, Read] {
            let index = AclIndex::from_rules([allow(1, "user:bob", "/d", &[perm])]);
            assert_eq!(authorize(&index, &bob(), access), Ok(()));
        }
        let index = AclIndex::from_rules([allow(1, "user:bob", "/d", &[Write, Copy])]);
        assert!(authorize(&index, &bob(), access).is_err());
    }
}

#[test]
fn move_needs_move_on_source_and_write_on_target_parent() {
    let (from, to) = (p("/src/f"), p("/dst/sub/f"));
    let access = Access::Move {
        from: &from,
        to: &to,
    };
    let source = allow(1, "user:bob", "/src", &[Move]);
    let target = allow(2, "user:bob", "/dst/sub", &[Write]);
    let both = AclIndex::from_rules([source.clone(), target.clone()]);
    assert_eq!(authorize(&both, &bob(), access), Ok(()));
    let only_source = AclIndex::from_rules([source]);
    assert_eq!(
        authorize(&only_source, &bob(), access),
        denied(Write, "/dst/sub")
    );
    let only_target = AclIndex::from_rules([target]);
    assert_eq!(
        authorize(&only_target, &bob(), access),
        denied(Move, "/src/f")
    );
    let write_on_target_only = AclIndex::from_rules([
        allow(1, "user:bob", "/src", &[Move]),
        allow(2, "user:bob", "/dst/sub/f", &[Write]),
    ]);
    assert!(authorize(&write_on_target_only, &bob(), access).is_err());
}

#[test]
fn copy_needs_read_or_copy_on_source_and_write_on_target_parent() {
    let (from, to) = (p("/src/f"), p("/g"));
    let access = Access::Copy {
        from: &from,
        to: &to,
    };
    for source_perm in [Read, Copy] {
        let index = AclIndex::from_rules([
            allow(1, "user:bob", "/src/f", &[source_perm]),
            allow(2, "user:bob", "/", &[Write]),
        ]);
        assert_eq!(authorize(&index, &bob(), access), Ok(()), "{source_perm}");
    }
    let move_only = AclIndex::from_rules([
        allow(1, "user:bob", "/src", &[Move]),
        allow(2, "user:bob", "/", &[Write]),
    ]);
    assert_eq!(
        authorize(&move_only, &bob(), access),
        denied(Copy, "/src/f")
    );
    let no_root_write = AclIndex::from_rules([allow(1, "user:bob", "/src", &[Read, Write])]);
    assert_eq!(
        authorize(&no_root_write, &bob(), access),
        denied(Write, "/")
    );
}

#[test]
fn admin_bypasses_the_acl_even_deny_rules() {
    let admin = principal("root", &["admin"]);
    let index = AclIndex::from_rules([deny(1, "*", "/", &Permission::ALL)]);
    let (a, b) = (p("/a"), p("/b"));
    for access in [
        Access::Mkdir(&a),
        Access::Download(&a),
        Access::Move { from: &a, to: &b },
        Access::Copy { from: &a, to: &b },
    ] {
        assert_eq!(authorize(&index, &admin, access), Ok(()));
        assert!(authorize(&index, &bob(), access).is_err());
    }
}

#[test]
fn denied_message_names_permission_and_path() {
    let message = denied(Write, "/a").unwrap_err().to_string();
    assert_eq!(message, "permission 'write' denied on /a");
}
