//! Staged uploads: streaming, promotion with retained versions, quarantine, the janitor's view.

use super::*;
use std::time::{Duration, SystemTime};

use platform::storage::StorageError;

#[tokio::test]
async fn staged_upload_is_promoted_and_read_back_whole_or_by_range() {
    let f = fixture();
    let a = t("acme");
    let id = stage(&f.s, &a, &[b"hello ", b"wide ", b"world"]).await;
    let mut staged = Vec::new();
    f.s.open_staged(&a, id)
        .await
        .unwrap()
        .read_to_end(&mut staged)
        .await
        .unwrap();
    assert_eq!(staged, b"hello wide world");
    assert_eq!(
        f.s.stat(&a, &p("/up.txt")).await.unwrap(),
        None,
        "staging is not the tree"
    );

    f.s.promote(&a, id, &p("/up.txt"), None).await.unwrap();
    f.s.promote(&a, id, &p("/up.txt"), None).await.unwrap(); // redelivery
    assert_eq!(
        read(&f.s, &a, "/up.txt", None, None).await,
        (b"hello wide world".to_vec(), 16)
    );
    assert_eq!(
        read(&f.s, &a, "/up.txt", None, Some((6, 10))).await,
        (b"wide".to_vec(), 16)
    );
    assert_eq!(
        read(&f.s, &a, "/up.txt", None, Some((11, 99))).await.0,
        b"world"
    );
    assert!(matches!(
        f.s.open_staged(&a, id).await,
        Err(StorageError::NotFound(_))
    ));

    // A promotion that never happened is not mistaken for a redelivery.
    let err =
        f.s.promote(&a, Uuid::new_v4(), &p("/up.txt"), None)
            .await
            .unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)));
    // Once the path holds other bytes, an old promotion no longer answers Ok.
    put(&f.s, &a, "/up.txt", b"newer").await;
    assert!(f.s.promote(&a, id, &p("/up.txt"), None).await.is_err());
}

#[tokio::test]
async fn promote_over_a_file_retains_the_old_version() {
    let f = fixture();
    let a = t("acme");
    put(&f.s, &a, "/doc", b"version one").await;
    let id = stage(&f.s, &a, &[b"version two"]).await;
    f.s.promote(&a, id, &p("/doc"), Some("v1")).await.unwrap();
    f.s.promote(&a, id, &p("/doc"), Some("v1")).await.unwrap(); // redelivery
    assert_eq!(read(&f.s, &a, "/doc", None, None).await.0, b"version two");
    assert_eq!(
        read(&f.s, &a, "/doc", Some("v1"), None).await.0,
        b"version one"
    );
    assert_eq!(
        read(&f.s, &a, "/doc", Some("v1"), Some((8, 11))).await.0,
        b"one"
    );
    // A version that was never retained is the current content.
    assert_eq!(
        read(&f.s, &a, "/doc", Some("v2"), None).await.0,
        b"version two"
    );

    let id = stage(&f.s, &a, &[b"x"]).await;
    let err =
        f.s.promote(&a, id, &p("/doc"), Some("../evil"))
            .await
            .unwrap_err();
    assert!(matches!(err, StorageError::Config(_)));
    assert!(matches!(
        f.s.open_read(&a, &p("/doc"), Some("../v1"), None).await,
        Err(StorageError::NotFound(_))
    ));
    f.s.create_dir(&a, &p("/dir")).await.unwrap();
    let err = f.s.promote(&a, id, &p("/dir"), None).await.unwrap_err();
    assert_eq!(err, StorageError::IsADirectory("/dir".into()));
    let err =
        f.s.promote(&a, id, &p("/missing/x"), None)
            .await
            .unwrap_err();
    assert_eq!(err, StorageError::NotFound("/missing".into()));
}

#[tokio::test]
async fn promote_rerun_after_a_crash_between_retaining_and_renaming_keeps_the_old_version() {
    let f = fixture();
    let a = t("acme");
    put(&f.s, &a, "/doc", b"old").await;
    // The crash happened after the old content was linked into versions/.
    let versions = f.root.join("tenants/acme/versions");
    std::fs::create_dir_all(&versions).unwrap();
    std::fs::hard_link(f.tree("acme").join("doc"), versions.join("v1")).unwrap();
    let id = stage(&f.s, &a, &[b"new"]).await;
    f.s.promote(&a, id, &p("/doc"), Some("v1")).await.unwrap();
    assert_eq!(read(&f.s, &a, "/doc", Some("v1"), None).await.0, b"old");
    assert_eq!(read(&f.s, &a, "/doc", None, None).await.0, b"new");
}

#[tokio::test]
async fn quarantine_moves_the_upload_out_of_reach() {
    let f = fixture();
    let a = t("acme");
    let id = stage(&f.s, &a, &[b"X5O!P%@AP"]).await;
    f.s.quarantine(&a, id).await.unwrap();
    f.s.quarantine(&a, id).await.unwrap(); // redelivery
    assert!(f
        .root
        .join("quarantine/acme")
        .join(id.to_string())
        .is_file());
    assert!(matches!(
        f.s.open_staged(&a, id).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        f.s.promote(&a, id, &p("/x"), None).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(f.s.stat(&a, &p("/x")).await.unwrap(), None);
    assert!(matches!(
        f.s.quarantine(&a, Uuid::new_v4()).await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn staged_writers_discard_and_stale_listing() {
    let f = fixture();
    let a = t("acme");
    let id = stage(&f.s, &a, &[b"old"]).await;
    let fresh = stage(&f.s, &a, &[b"fresh"]).await;
    let err = f.s.create_staged(&a, id).await.err().unwrap();
    assert!(matches!(err, StorageError::AlreadyExists(_)));
    let staged = f.root.join("staging/acme").join(id.to_string());
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let stale = f.s.stale_staged(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(stale, vec![(a.clone(), id)]);
    assert!(!stale.iter().any(|(_, u)| *u == fresh));
    f.s.discard_staged(&a, id).await.unwrap();
    f.s.discard_staged(&a, id).await.unwrap();
    assert!(!staged.exists());

    // A writer dropped before `finish` (client went away) leaves nothing behind.
    let dropped = Uuid::new_v4();
    let mut w = f.s.create_staged(&a, dropped).await.unwrap();
    w.write(b"partial").await.unwrap();
    drop(w);
    assert!(!f
        .root
        .join("staging/acme")
        .join(dropped.to_string())
        .exists());
}
