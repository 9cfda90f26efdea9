//! Tree operations: stat, mkdir, list, remove and rename, with their errors and re-runs.

use super::*;
use platform::storage::StorageError;

#[tokio::test]
async fn stat_reports_files_dirs_and_absence() {
    let f = fixture();
    let a = t("acme");
    assert_eq!(f.s.stat(&a, &p("/")).await.unwrap(), DIR);
    assert!(f.s.create_dir(&a, &p("/docs")).await.unwrap());
    put(&f.s, &a, "/docs/a.txt", b"hello").await;
    assert_eq!(f.s.stat(&a, &p("/docs")).await.unwrap(), DIR);
    assert_eq!(f.s.stat(&a, &p("/docs/a.txt")).await.unwrap(), file(5));
    assert_eq!(f.s.stat(&a, &p("/nope")).await.unwrap(), None);
    assert_eq!(f.s.stat(&a, &p("/docs/a.txt/below")).await.unwrap(), None);
}

#[tokio::test]
async fn create_dir_creates_once_and_reports_what_is_in_the_way() {
    let f = fixture();
    let a = t("acme");
    assert!(f.s.create_dir(&a, &p("/d")).await.unwrap());
    assert!(
        !f.s.create_dir(&a, &p("/d")).await.unwrap(),
        "re-run reports existing"
    );
    assert!(!f.s.create_dir(&a, &p("/")).await.unwrap());
    put(&f.s, &a, "/f", b"x").await;
    let e = |r: Result<bool, StorageError>| r.unwrap_err();
    assert_eq!(
        e(f.s.create_dir(&a, &p("/f")).await),
        StorageError::AlreadyExists("/f".into())
    );
    assert_eq!(
        e(f.s.create_dir(&a, &p("/missing/d")).await),
        StorageError::NotFound("/missing".into())
    );
    assert_eq!(
        e(f.s.create_dir(&a, &p("/f/d")).await),
        StorageError::NotADirectory("/f".into())
    );
    assert!(f.tree("acme").join("d").is_dir());
}

#[tokio::test]
async fn create_dir_all_creates_ancestors_and_is_idempotent() {
    let f = fixture();
    let a = t("acme");
    f.s.create_dir_all(&a, &p("/a/b/c")).await.unwrap();
    f.s.create_dir_all(&a, &p("/a/b/c")).await.unwrap();
    f.s.create_dir_all(&a, &p("/")).await.unwrap();
    assert_eq!(f.s.stat(&a, &p("/a/b/c")).await.unwrap(), DIR);
    put(&f.s, &a, "/a/file", b"x").await;
    let err = f.s.create_dir_all(&a, &p("/a/file/x/y")).await.unwrap_err();
    assert_eq!(err, StorageError::NotADirectory("/a/file".into()));
    let err = f.s.create_dir_all(&a, &p("/a/file")).await.unwrap_err();
    assert_eq!(err, StorageError::AlreadyExists("/a/file".into()));
}

#[tokio::test]
async fn list_is_sorted_and_hides_temp_entries_and_symlinks() {
    let f = fixture();
    let a = t("acme");
    f.s.create_dir(&a, &p("/d")).await.unwrap();
    put(&f.s, &a, "/d/b.txt", b"bb").await;
    put(&f.s, &a, "/d/a.txt", b"a").await;
    f.s.create_dir(&a, &p("/d/c")).await.unwrap();
    let d = f.tree("acme").join("d");
    std::fs::write(d.join(".fe-tmp-0123"), b"half").unwrap();
    std::os::unix::fs::symlink("a.txt", d.join("link")).unwrap();
    let entries = f.s.list(&a, &p("/d")).await.unwrap();
    assert_eq!(names(&entries), ["a.txt", "b.txt", "c"]);
    assert_eq!(entries[1].1, file(2).unwrap());
    assert_eq!(entries[2].1, DIR.unwrap());
    assert!(f
        .s
        .list(&a, &p("/"))
        .await
        .unwrap()
        .iter()
        .any(|(n, _)| n == "d"));
    let err = f.s.list(&a, &p("/nope")).await.unwrap_err();
    assert_eq!(err, StorageError::NotFound("/nope".into()));
    let err = f.s.list(&a, &p("/d/a.txt")).await.unwrap_err();
    assert_eq!(err, StorageError::NotADirectory("/d/a.txt".into()));
}

#[tokio::test]
async fn reserved_temp_names_are_refused_as_paths() {
    let f = fixture();
    let a = t("acme");
    let err = f.s.create_dir(&a, &p("/.fe-tmp-x")).await.unwrap_err();
    assert!(matches!(err, StorageError::Escape(_)), "{err:?}");
    assert_eq!(err.code(), "storage_error");
}

#[tokio::test]
async fn remove_handles_files_empty_dirs_and_subtrees() {
    let f = fixture();
    let a = t("acme");
    f.s.create_dir_all(&a, &p("/d/sub/deeper")).await.unwrap();
    put(&f.s, &a, "/d/sub/x", b"x").await;
    put(&f.s, &a, "/f", b"f").await;
    assert!(f.s.remove(&a, &p("/f"), false).await.unwrap());
    assert!(
        !f.s.remove(&a, &p("/f"), false).await.unwrap(),
        "re-run finds it gone"
    );
    let err = f.s.remove(&a, &p("/d"), false).await.unwrap_err();
    assert_eq!(err, StorageError::NotEmpty("/d".into()));
    assert!(f.s.remove(&a, &p("/d/sub/deeper"), false).await.unwrap());
    assert!(f.s.remove(&a, &p("/d"), true).await.unwrap());
    assert!(
        !f.s.remove(&a, &p("/d"), true).await.unwrap(),
        "re-run finds it gone"
    );
    assert_eq!(f.s.stat(&a, &p("/d")).await.unwrap(), None);
    let trash = f.root.join("tenants/acme/trash");
    assert_eq!(
        std::fs::read_dir(trash).unwrap().count(),
        0,
        "trash emptied"
    );
    let err = f.s.remove(&a, &p("/"), true).await.unwrap_err();
    assert_eq!(err.code(), "conflict");
}

#[tokio::test]
async fn recursive_remove_sweeps_subtrees_left_in_trash_by_a_crash() {
    let f = fixture();
    let a = t("acme");
    f.s.create_dir(&a, &p("/d")).await.unwrap();
    let trash = f.root.join("tenants/acme/trash");
    std::fs::create_dir_all(&trash).unwrap();
    let old = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        1_600_000_000,
        0,
    ));
    let leftover = trash.join(format!(".fe-tmp-{}", old.simple()));
    std::fs::create_dir_all(leftover.join("inner")).unwrap();
    assert!(f.s.remove(&a, &p("/d"), true).await.unwrap());
    assert!(!leftover.exists());
}

#[tokio::test]
async fn rename_moves_files_and_dirs_with_overwrite_rules() {
    let f = fixture();
    let a = t("acme");
    f.s.create_dir_all(&a, &p("/src/inner")).await.unwrap();
    put(&f.s, &a, "/src/inner/x", b"x").await;
    f.s.create_dir(&a, &p("/dst")).await.unwrap();
    f.s.rename(&a, &p("/src"), &p("/dst/moved"), false)
        .await
        .unwrap();
    assert_eq!(f.s.stat(&a, &p("/src")).await.unwrap(), None);
    assert_eq!(
        read(&f.s, &a, "/dst/moved/inner/x", None, None).await.0,
        b"x"
    );

    // Re-run after success: source gone, target untouched.
    let err =
        f.s.rename(&a, &p("/src"), &p("/dst/moved"), false)
            .await
            .unwrap_err();
    assert_eq!(err, StorageError::NotFound("/src".into()));
    assert_eq!(
        read(&f.s, &a, "/dst/moved/inner/x", None, None).await.0,
        b"x"
    );

    put(&f.s, &a, "/one", b"1").await;
    put(&f.s, &a, "/two", b"2").await;
    let err =
        f.s.rename(&a, &p("/one"), &p("/two"), false)
            .await
            .unwrap_err();
    assert_eq!(err, StorageError::AlreadyExists("/two".into()));
    f.s.rename(&a, &p("/one"), &p("/two"), true).await.unwrap();
    assert_eq!(read(&f.s, &a, "/two", None, None).await.0, b"1");

    let err =
        f.s.rename(&a, &p("/two"), &p("/dst"), true)
            .await
            .unwrap_err();
    assert_eq!(err, StorageError::NotEmpty("/dst".into()));
    f.s.create_dir(&a, &p("/empty")).await.unwrap();
    f.s.rename(&a, &p("/two"), &p("/empty"), true)
        .await
        .unwrap();
    assert_eq!(f.s.stat(&a, &p("/empty")).await.unwrap(), file(1));
    put(&f.s, &a, "/plain", b"p").await;
    f.s.rename(&a, &p("/dst"), &p("/plain"), true)
        .await
        .unwrap();
    assert_eq!(
        f.s.stat(&a, &p("/plain/moved/inner/x")).await.unwrap(),
        file(1)
    );
}

#[tokio::test]
async fn rename_refuses_impossible_moves() {
    let f = fixture();
    let a = t("acme");
    f.s.create_dir_all(&a, &p("/d/sub")).await.unwrap();
    let err =
        f.s.rename(&a, &p("/d"), &p("/d/sub/d"), false)
            .await
            .unwrap_err();
    assert_eq!(err.code(), "conflict");
    assert_eq!(f.s.stat(&a, &p("/d/sub")).await.unwrap(), DIR);
    let err =
        f.s.rename(&a, &p("/nope"), &p("/x"), false)
            .await
            .unwrap_err();
    assert_eq!(err, StorageError::NotFound("/nope".into()));
    let err =
        f.s.rename(&a, &p("/d"), &p("/missing/x"), false)
            .await
            .unwrap_err();
    assert_eq!(err, StorageError::NotFound("/missing".into()));
    assert!(f.s.rename(&a, &p("/"), &p("/x"), false).await.is_err());
    f.s.rename(&a, &p("/d"), &p("/d"), false).await.unwrap();
}
