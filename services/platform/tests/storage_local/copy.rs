//! Copies of files and trees: overwrite rules, atomic placement, crash left-overs.

use super::*;
use platform::storage::StorageError;

#[tokio::test]
async fn copy_duplicates_a_nested_tree_without_leaving_temp_entries() {
    let f = fixture();
    let a = t("acme");
    f.s.create_dir_all(&a, &p("/src/a/b")).await.unwrap();
    f.s.create_dir(&a, &p("/src/empty")).await.unwrap();
    put(&f.s, &a, "/src/top.txt", b"top").await;
    put(&f.s, &a, "/src/a/b/deep.txt", b"deep").await;
    f.s.copy(&a, &p("/src"), &p("/copy"), false).await.unwrap();
    assert_eq!(
        read(&f.s, &a, "/copy/a/b/deep.txt", None, None).await.0,
        b"deep"
    );
    assert_eq!(read(&f.s, &a, "/copy/top.txt", None, None).await.0, b"top");
    assert_eq!(f.s.stat(&a, &p("/copy/empty")).await.unwrap(), DIR);
    assert_eq!(
        read(&f.s, &a, "/src/a/b/deep.txt", None, None).await.0,
        b"deep"
    );
    assert!(temp_entries(&f.tree("acme")).is_empty());

    // The copy is independent of its source.
    put(&f.s, &a, "/src/top.txt", b"changed").await;
    assert_eq!(read(&f.s, &a, "/copy/top.txt", None, None).await.0, b"top");

    // Re-run (redelivery) without overwrite: refused, copy intact; with overwrite: same result.
    let err =
        f.s.copy(&a, &p("/src"), &p("/copy"), false)
            .await
            .unwrap_err();
    assert_eq!(err, StorageError::AlreadyExists("/copy".into()));
    let err =
        f.s.copy(&a, &p("/src"), &p("/copy"), true)
            .await
            .unwrap_err();
    assert_eq!(err, StorageError::NotEmpty("/copy".into()));
    f.s.copy(&a, &p("/src/top.txt"), &p("/copy/top.txt"), true)
        .await
        .unwrap();
    f.s.copy(&a, &p("/src/top.txt"), &p("/copy/top.txt"), true)
        .await
        .unwrap();
    assert_eq!(
        read(&f.s, &a, "/copy/top.txt", None, None).await.0,
        b"changed"
    );
}

#[tokio::test]
async fn copy_follows_the_overwrite_and_existence_rules() {
    let f = fixture();
    let a = t("acme");
    f.s.create_dir_all(&a, &p("/d/sub")).await.unwrap();
    put(&f.s, &a, "/f", b"f").await;
    let err =
        f.s.copy(&a, &p("/d"), &p("/d/sub/again"), false)
            .await
            .unwrap_err();
    assert_eq!(err.code(), "conflict");
    let err =
        f.s.copy(&a, &p("/nope"), &p("/x"), false)
            .await
            .unwrap_err();
    assert_eq!(err, StorageError::NotFound("/nope".into()));
    let err =
        f.s.copy(&a, &p("/f"), &p("/missing/x"), false)
            .await
            .unwrap_err();
    assert_eq!(err, StorageError::NotFound("/missing".into()));
    let err = f.s.copy(&a, &p("/f"), &p("/f/x"), false).await.unwrap_err();
    assert_eq!(err, StorageError::NotADirectory("/f".into()));
    // A directory replaces an empty directory; a file replaces an empty directory.
    f.s.create_dir(&a, &p("/e1")).await.unwrap();
    f.s.create_dir(&a, &p("/e2")).await.unwrap();
    f.s.copy(&a, &p("/d"), &p("/e1"), true).await.unwrap();
    assert_eq!(f.s.stat(&a, &p("/e1/sub")).await.unwrap(), DIR);
    f.s.copy(&a, &p("/f"), &p("/e2"), true).await.unwrap();
    assert_eq!(f.s.stat(&a, &p("/e2")).await.unwrap(), file(1));
    assert!(temp_entries(&f.tree("acme")).is_empty());
}

#[tokio::test]
async fn copy_sweeps_stale_temp_left_by_a_crash_but_keeps_fresh_ones() {
    let f = fixture();
    let a = t("acme");
    put(&f.s, &a, "/f", b"f").await;
    let old = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        1_600_000_000,
        0,
    ));
    let stale = f.tree("acme").join(format!(".fe-tmp-{}", old.simple()));
    let fresh = f
        .tree("acme")
        .join(format!(".fe-tmp-{}", Uuid::now_v7().simple()));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(&fresh, b"in progress").unwrap();
    f.s.copy(&a, &p("/f"), &p("/g"), false).await.unwrap();
    assert!(!stale.exists());
    assert!(fresh.exists());
    assert_eq!(names(&f.s.list(&a, &p("/")).await.unwrap()), ["f", "g"]);
}
