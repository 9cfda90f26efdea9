//! Behaviour of `LocalStorage` on a real filesystem (temp dirs): every tree operation with
//! its errors, re-runs as the worker's redelivery would do them, staged uploads, and
//! confinement: symlinks planted on disk never lead outside the tenant root, and tenants
//! never reach each other.

use std::path::{Path, PathBuf};

use events::{FilePath, TenantId};
use platform::storage::{EntryKind, EntryMeta, LocalStorage, Storage};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

#[path = "storage_local/confinement.rs"]
mod confinement;
#[path = "storage_local/copy.rs"]
mod copy;
#[path = "storage_local/tree.rs"]
mod tree;
#[path = "storage_local/uploads.rs"]
mod uploads;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    s: LocalStorage,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let s = LocalStorage::new(&root).unwrap();
    Fixture { _tmp: tmp, root, s }
}

impl Fixture {
    fn tree(&self, t: &str) -> PathBuf {
        self.root.join("tenants").join(t).join("tree")
    }
}

fn t(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn p(s: &str) -> FilePath {
    FilePath::parse(s).unwrap()
}

fn file(size: u64) -> Option<EntryMeta> {
    Some(EntryMeta {
        kind: EntryKind::File,
        size,
    })
}

const DIR: Option<EntryMeta> = Some(EntryMeta {
    kind: EntryKind::Dir,
    size: 0,
});

/// Stages `chunks` as a new upload and returns its id.
async fn stage(s: &LocalStorage, ten: &TenantId, chunks: &[&[u8]]) -> Uuid {
    let id = Uuid::new_v4();
    let mut w = s.create_staged(ten, id).await.unwrap();
    for c in chunks {
        w.write(c).await.unwrap();
    }
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    assert_eq!(w.finish().await.unwrap(), total as u64);
    id
}

/// Writes a file through the upload path (stage + promote).
async fn put(s: &LocalStorage, ten: &TenantId, path: &str, bytes: &[u8]) {
    let id = stage(s, ten, &[bytes]).await;
    s.promote(ten, id, &p(path), None).await.unwrap();
}

async fn read(
    s: &LocalStorage,
    ten: &TenantId,
    path: &str,
    version: Option<&str>,
    range: Option<(u64, u64)>,
) -> (Vec<u8>, u64) {
    let (mut r, size) = s.open_read(ten, &p(path), version, range).await.unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    (out, size)
}

fn names(entries: &[(String, EntryMeta)]) -> Vec<&str> {
    entries.iter().map(|(n, _)| n.as_str()).collect()
}

fn temp_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".fe-tmp-"))
        .collect()
}
