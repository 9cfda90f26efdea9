//! What a task asks for: the client's file commands and uploads, and the identity rules that
//! tie an idempotency key to exactly one task.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::FilePath;

/// A command body of `POST /v1/commands`, exactly as API.md lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum FileCommand {
    Mkdir {
        path: FilePath,
        #[serde(default)]
        parents: bool,
    },
    Move {
        from: FilePath,
        to: FilePath,
        #[serde(default)]
        overwrite: bool,
    },
    Copy {
        from: FilePath,
        to: FilePath,
        #[serde(default)]
        overwrite: bool,
    },
    Delete {
        path: FilePath,
        #[serde(default)]
        recursive: bool,
    },
}

/// A staged upload waiting to become the content of `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSpec {
    pub path: FilePath,
    pub upload_id: Uuid,
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
}

/// Everything a task can be asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TaskSpec {
    Command(FileCommand),
    Upload(UploadSpec),
}

/// The `op` of a task as shown to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskOp {
    Mkdir,
    Move,
    Copy,
    Delete,
    Upload,
}

impl TaskOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mkdir => "mkdir",
            Self::Move => "move",
            Self::Copy => "copy",
            Self::Delete => "delete",
            Self::Upload => "upload",
        }
    }
}

impl FileCommand {
    pub fn op(&self) -> TaskOp {
        match self {
            Self::Mkdir { .. } => TaskOp::Mkdir,
            Self::Move { .. } => TaskOp::Move,
            Self::Copy { .. } => TaskOp::Copy,
            Self::Delete { .. } => TaskOp::Delete,
        }
    }
}

impl TaskSpec {
    pub fn op(&self) -> TaskOp {
        match self {
            Self::Command(c) => c.op(),
            Self::Upload(_) => TaskOp::Upload,
        }
    }

    /// Every path the task reads or changes. Two tasks whose paths overlap (one contains the
    /// other) must run in log order.
    pub fn paths(&self) -> Vec<&FilePath> {
        match self {
            Self::Command(FileCommand::Mkdir { path, .. })
            | Self::Command(FileCommand::Delete { path, .. }) => vec![path],
            Self::Command(FileCommand::Move { from, to, .. })
            | Self::Command(FileCommand::Copy { from, to, .. }) => vec![from, to],
            Self::Upload(u) => vec![&u.path],
        }
    }

    /// Whether this task and `other` touch a common path or one below the other's.
    pub fn overlaps(&self, other: &TaskSpec) -> bool {
        self.paths()
            .iter()
            .any(|a| other.paths().iter().any(|b| a.overlaps(b)))
    }
}

/// SHA-256 (hex) of the canonical form of a JSON request body: "same body" means the same JSON
/// value, whatever the key order or white space.
pub fn body_hash(body: &serde_json::Value) -> String {
    // serde_json's Map is ordered by key, so `to_vec` is canonical for equal values.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(json: &str) -> Result<FileCommand, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn commands_parse_as_api_md_writes_them() {
        assert_eq!(
            cmd(r#"{"op":"mkdir","path":"/a/b","parents":true}"#).unwrap(),
            FileCommand::Mkdir {
                path: FilePath::parse("/a/b").unwrap(),
                parents: true
            }
        );
        assert!(matches!(
            cmd(r#"{"op":"move","from":"/a/x","to":"/b/x"}"#).unwrap(),
            FileCommand::Move {
                overwrite: false,
                ..
            }
        ));
        assert!(matches!(
            cmd(r#"{"op":"delete","path":"/a","recursive":false}"#).unwrap(),
            FileCommand::Delete {
                recursive: false,
                ..
            }
        ));
    }

    #[test]
    fn unknown_ops_fields_and_bad_paths_are_rejected() {
        assert!(cmd(r#"{"op":"chmod","path":"/a"}"#).is_err());
        assert!(cmd(r#"{"op":"mkdir","path":"/a","mode":7}"#).is_err());
        assert!(cmd(r#"{"op":"mkdir","path":"/a/../b"}"#).is_err());
        assert!(cmd(r#"{"op":"mkdir"}"#).is_err());
        assert!(cmd(r#"{"op":"mkdir","path":"/a","parents":"yes"}"#).is_err());
    }

    #[test]
    fn body_hash_ignores_key_order_and_whitespace_but_not_values() {
        let a: serde_json::Value = serde_json::from_str(r#"{"op":"mkdir","path":"/a"}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "path": "/a", "op": "mkdir" }"#).unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"op":"mkdir","path":"/b"}"#).unwrap();
        assert_eq!(body_hash(&a), body_hash(&b));
        assert_ne!(body_hash(&a), body_hash(&c));
    }

    #[test]
    fn overlapping_paths_are_detected_by_containment() {
        let spec = |j: &str| TaskSpec::Command(cmd(j).unwrap());
        let mv = spec(r#"{"op":"move","from":"/a/x","to":"/b/x"}"#);
        assert!(mv.overlaps(&spec(r#"{"op":"delete","path":"/a"}"#)));
        assert!(mv.overlaps(&spec(r#"{"op":"mkdir","path":"/b/x/y"}"#)));
        assert!(!mv.overlaps(&spec(r#"{"op":"mkdir","path":"/a/xy"}"#)));
    }
}
