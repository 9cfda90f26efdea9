//! A reference model of the file tree: the same commands applied one after another in log
//! order, with the outcome rules of API.md (storage-state failures are task failures). The
//! worker-kill scenario compares the platform's final tree and every task's status with it.
//!
//! The workload keeps to cases whose outcome the contract fixes: moves and copies go between
//! siblings (never into an ancestor or descendant), and uploads carry unique bytes so every
//! file's SHA-256 names the upload that put it there.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// One command of the workload.
#[derive(Debug, Clone)]
pub enum Op {
    Mkdir(String),
    Upload(String, Vec<u8>),
    Move {
        from: String,
        to: String,
        overwrite: bool,
    },
    Copy {
        from: String,
        to: String,
        overwrite: bool,
    },
    Delete(String),
}

impl Op {
    /// The `POST /v1/commands` body (uploads are a `PUT` instead).
    pub fn body(&self) -> Option<Value> {
        Some(match self {
            Op::Mkdir(p) => json!({"op": "mkdir", "path": p, "parents": true}),
            Op::Move {
                from,
                to,
                overwrite,
            } => {
                json!({"op": "move", "from": from, "to": to, "overwrite": overwrite})
            }
            Op::Copy {
                from,
                to,
                overwrite,
            } => {
                json!({"op": "copy", "from": from, "to": to, "overwrite": overwrite})
            }
            Op::Delete(p) => json!({"op": "delete", "path": p, "recursive": true}),
            Op::Upload(..) => return None,
        })
    }
}

/// A random mix over `lanes` independent subtrees `/<root>/l<k>` (mkdir, upload, move, copy,
/// overwrite by move/copy/upload, recursive delete). The first `lanes` ops create the lanes.
pub fn workload(rng: &mut StdRng, root: &str, lanes: usize, n: usize) -> Vec<Op> {
    let mut ops: Vec<Op> = (0..lanes)
        .map(|k| Op::Mkdir(format!("{root}/l{k}")))
        .collect();
    let top = |rng: &mut StdRng, lane: usize| format!("{root}/l{lane}/n{}", rng.random_range(0..4));
    for i in ops.len()..n {
        let lane = rng.random_range(0..lanes);
        let a = top(rng, lane);
        let sibling = |rng: &mut StdRng| loop {
            let b = top(rng, lane);
            if b != a {
                return b;
            }
        };
        let op = match rng.random_range(0..100) {
            0..=17 => Op::Mkdir(if rng.random_bool(0.5) {
                a
            } else {
                format!("{a}/d{}", rng.random_range(0..2))
            }),
            18..=42 => {
                let path = if rng.random_bool(0.5) {
                    a
                } else {
                    format!("{a}/f{}", rng.random_range(0..2))
                };
                Op::Upload(path, format!("fault workload upload {i}\n").into_bytes())
            }
            43..=57 => Op::Move {
                to: sibling(rng),
                from: a,
                overwrite: false,
            },
            58..=71 => Op::Copy {
                to: sibling(rng),
                from: a,
                overwrite: false,
            },
            72..=84 => {
                let to = sibling(rng);
                if rng.random_bool(0.5) {
                    Op::Move {
                        from: a,
                        to,
                        overwrite: true,
                    }
                } else {
                    Op::Copy {
                        from: a,
                        to,
                        overwrite: true,
                    }
                }
            }
            _ => Op::Delete(a),
        };
        ops.push(op);
    }
    ops
}

/// What an entry of the model is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    /// A file and the SHA-256 (hex) of its bytes.
    File(String),
}

/// The model tree: absolute path → node (the tenant root is implicit).
#[derive(Debug, Default, Clone)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
}

fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

fn ancestors(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = parent(p);
    while cur != "/" {
        out.push(cur.to_owned());
        cur = parent(cur);
    }
    out.reverse();
    out
}

impl Tree {
    fn get(&self, p: &str) -> Option<&Node> {
        if p == "/" {
            return Some(&Node::Dir);
        }
        self.nodes.get(p)
    }

    fn subtree(&self, p: &str) -> Vec<(String, Node)> {
        let prefix = format!("{p}/");
        self.nodes
            .iter()
            .filter(|(k, _)| *k == p || k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn remove(&mut self, p: &str) {
        for (k, _) in self.subtree(p) {
            self.nodes.remove(&k);
        }
    }

    /// Whether creating `p` is blocked by a file among its ancestors.
    fn ancestor_is_file(&self, p: &str) -> bool {
        ancestors(p)
            .iter()
            .any(|a| matches!(self.get(a), Some(Node::File(_))))
    }

    fn make_parents(&mut self, p: &str) {
        for a in ancestors(p) {
            self.nodes.entry(a).or_insert(Node::Dir);
        }
    }

    /// Applies one command; `true` when the task succeeds.
    pub fn apply(&mut self, op: &Op) -> bool {
        match op {
            Op::Mkdir(p) => {
                if matches!(self.get(p), Some(Node::File(_))) || self.ancestor_is_file(p) {
                    return false;
                }
                self.make_parents(p);
                self.nodes.insert(p.clone(), Node::Dir);
                true
            }
            Op::Upload(p, bytes) => {
                if matches!(self.get(p), Some(Node::Dir)) || self.ancestor_is_file(p) {
                    return false;
                }
                self.make_parents(p);
                self.nodes.insert(p.clone(), Node::File(sha256_hex(bytes)));
                true
            }
            Op::Delete(p) => {
                if self.get(p).is_none() {
                    return false;
                }
                self.remove(p);
                true
            }
            Op::Move {
                from,
                to,
                overwrite,
            }
            | Op::Copy {
                from,
                to,
                overwrite,
            } => {
                let keep_source = matches!(op, Op::Copy { .. });
                if self.get(from).is_none() || !matches!(self.get(parent(to)), Some(Node::Dir)) {
                    return false;
                }
                // `overwrite: true` replaces whatever is at the target, a non-empty directory
                // included (API.md: it then needs `delete` on everything below it).
                if self.get(to).is_some() && !*overwrite {
                    return false;
                }
                let moved = self.subtree(from);
                self.remove(to);
                if !keep_source {
                    self.remove(from);
                }
                for (k, v) in moved {
                    let rel = &k[from.len()..];
                    self.nodes.insert(format!("{to}{rel}"), v);
                }
                true
            }
        }
    }

    /// Entries below `root` (excluded).
    pub fn below(&self, root: &str) -> BTreeMap<String, Node> {
        let prefix = format!("{root}/");
        self.nodes
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_follows_the_contract() {
        let mut t = Tree::default();
        assert!(t.apply(&Op::Mkdir("/r/a".into())));
        assert!(t.apply(&Op::Upload("/r/a/f".into(), b"1".to_vec())));
        assert!(
            !t.apply(&Op::Upload("/r/a".into(), b"2".to_vec())),
            "onto a dir"
        );
        assert!(!t.apply(&Op::Mkdir("/r/a/f/x".into())), "below a file");
        assert!(t.apply(&Op::Copy {
            from: "/r/a".into(),
            to: "/r/b".into(),
            overwrite: false
        }));
        assert!(
            t.apply(&Op::Move {
                from: "/r/a".into(),
                to: "/r/b".into(),
                overwrite: true
            }),
            "overwrite replaces a non-empty directory"
        );
        assert_eq!(t.get("/r/a"), None);
        assert_eq!(t.get("/r/b/f"), Some(&Node::File(sha256_hex(b"1"))));
        assert!(!t.apply(&Op::Delete("/r/a".into())));
    }
}
