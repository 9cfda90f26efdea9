//! Confinement: tenants never reach each other, and symlinks planted on disk never lead
//! outside the tenant root.

use super::*;
use platform::storage::StorageError;

#[tokio::test]
async fn tenants_never_see_each_other() {
    let f = fixture();
    let (a, b) = (t("acme"), t("bravo"));
    f.s.create_dir(&a, &p("/shared")).await.unwrap();
    put(&f.s, &a, "/shared/x", b"acme secret").await;
    assert_eq!(f.s.stat(&b, &p("/shared/x")).await.unwrap(), None);
    assert!(f.s.list(&b, &p("/")).await.unwrap().is_empty());
    assert!(matches!(
        f.s.open_read(&b, &p("/shared/x"), None, None).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        f.s.copy(&b, &p("/shared/x"), &p("/y"), false).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(!f.s.remove(&b, &p("/shared"), true).await.unwrap());
    let id = stage(&f.s, &a, &[b"acme upload"]).await;
    assert!(matches!(
        f.s.open_staged(&b, id).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        f.s.promote(&b, id, &p("/stolen"), None).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        f.s.quarantine(&b, id).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(
        read(&f.s, &a, "/shared/x", None, None).await.0,
        b"acme secret"
    );
}

/// A tenant tree with planted symlinks pointing out of it, next to an outside directory
/// holding a secret, and a second tenant with a file of its own.
struct Planted {
    f: Fixture,
    outside: PathBuf,
}

const SECRET: &[u8] = b"outside secret";

async fn planted() -> Planted {
    let f = fixture();
    let outside = f._tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    let a = t("acme");
    f.s.create_dir(&a, &p("/d")).await.unwrap();
    put(&f.s, &a, "/d/mine.txt", b"mine").await;
    put(&f.s, &t("bravo"), "/b.txt", b"bravo data").await;
    let tree = f.tree("acme");
    use std::os::unix::fs::symlink;
    symlink(&outside, tree.join("abs")).unwrap();
    symlink(outside.join("secret.txt"), tree.join("abs-file")).unwrap();
    // tree -> tenants/acme -> tenants -> root -> tmp: four levels up is the temp dir.
    symlink("../../../../outside", tree.join("rel")).unwrap();
    // Three levels up is the storage root, from where another tenant's tree is in reach.
    symlink("../../..", tree.join("up")).unwrap();
    symlink(&outside, tree.join("d/abs-in-d")).unwrap();
    Planted { f, outside }
}

impl Planted {
    fn assert_outside_untouched(&self) {
        assert_eq!(
            std::fs::read(self.outside.join("secret.txt")).unwrap(),
            SECRET
        );
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret.txt"], "nothing written outside");
        let b = self.f.tree("bravo").join("b.txt");
        assert_eq!(std::fs::read(b).unwrap(), b"bravo data");
    }
}

fn refused<T: std::fmt::Debug>(r: Result<T, StorageError>) {
    match r {
        Err(StorageError::Escape(_) | StorageError::NotFound(_)) => {}
        other => panic!("expected Escape or NotFound, got {other:?}"),
    }
}

const ESCAPING: [&str; 7] = [
    "/abs",
    "/abs/secret.txt",
    "/abs-file",
    "/rel",
    "/rel/secret.txt",
    "/up/tenants/bravo/tree/b.txt",
    "/d/abs-in-d/secret.txt",
];

#[tokio::test]
async fn symlinks_out_of_the_tree_cannot_be_read_or_listed() {
    let pl = planted().await;
    let (s, a) = (&pl.f.s, t("acme"));
    for path in ESCAPING {
        refused(s.stat(&a, &p(path)).await);
        refused(s.open_read(&a, &p(path), None, None).await.map(|(_, n)| n));
        refused(s.list(&a, &p(path)).await);
    }
    refused(s.list(&a, &p("/up/tenants/bravo/tree")).await);
    // Listings show only what the tenant really has.
    assert_eq!(names(&s.list(&a, &p("/")).await.unwrap()), ["d"]);
    assert_eq!(names(&s.list(&a, &p("/d")).await.unwrap()), ["mine.txt"]);
    pl.assert_outside_untouched();
}

#[tokio::test]
async fn symlinks_out_of_the_tree_cannot_be_copied_from_or_written_through() {
    let pl = planted().await;
    let (s, a) = (&pl.f.s, t("acme"));
    for path in ESCAPING {
        refused(s.copy(&a, &p(path), &p("/stolen"), false).await);
        refused(
            s.rename(&a, &p(&format!("{path}/x")), &p("/stolen"), false)
                .await,
        );
    }
    assert_eq!(s.stat(&a, &p("/stolen")).await.unwrap(), None);
    for target in [
        "/abs/new",
        "/rel/new",
        "/up/tenants/bravo/tree/new",
        "/abs/secret.txt",
    ] {
        refused(s.copy(&a, &p("/d/mine.txt"), &p(target), true).await);
        refused(s.rename(&a, &p("/d/mine.txt"), &p(target), true).await);
        refused(s.create_dir_all(&a, &p(&format!("{target}/x"))).await);
        refused(s.create_dir(&a, &p(target)).await);
        let id = stage(s, &a, &[b"overwrite attempt"]).await;
        refused(s.promote(&a, id, &p(target), Some("v1")).await);
    }
    for path in ESCAPING.iter().filter(|p| p.matches('/').count() > 1) {
        refused(s.remove(&a, &p(path), true).await);
    }
    // A directory holding a link is copied without the link (it is not followed).
    s.copy(&a, &p("/d"), &p("/d2"), false).await.unwrap();
    assert_eq!(names(&s.list(&a, &p("/d2")).await.unwrap()), ["mine.txt"]);
    assert!(!pl.f.tree("acme").join("d2/abs-in-d").exists());
    assert_eq!(read(s, &a, "/d/mine.txt", None, None).await.0, b"mine");
    pl.assert_outside_untouched();
}

#[tokio::test]
async fn removing_or_moving_a_planted_link_acts_on_the_link_only() {
    let pl = planted().await;
    let (s, a) = (&pl.f.s, t("acme"));
    s.rename(&a, &p("/rel"), &p("/d/rel-moved"), false)
        .await
        .unwrap();
    refused(s.stat(&a, &p("/d/rel-moved/secret.txt")).await);
    assert!(s.remove(&a, &p("/abs"), true).await.unwrap());
    assert!(s.remove(&a, &p("/up"), true).await.unwrap());
    assert!(s.remove(&a, &p("/abs-file"), false).await.unwrap());
    assert!(s.remove(&a, &p("/d"), true).await.unwrap());
    assert!(!pl.f.tree("acme").join("abs").exists());
    pl.assert_outside_untouched();
    assert!(pl.f.root.join("tenants/bravo/tree").is_dir());
}
