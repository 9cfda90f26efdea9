//! What each operation needs from the ACL ([`Access`], [`authorize`]).
//!
//! Owns the mapping from API operations to permission checks (API.md "Authorization (ACL)"
//! and "Which path is checked"), including the composite move/copy checks and the admin
//! bypass. Rule evaluation itself is [`AclIndex::decide`]. No IO here.

use super::index::AclIndex;
use super::rule::Permission;
use crate::identity::Principal;
use crate::path::FilePath;

/// An operation about to be performed, with the paths it touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// Create a directory: `mkdir` on the new path.
    Mkdir(&'a FilePath),
    /// Delete an entry: `delete` on the path.
    Delete(&'a FilePath),
    /// Upload a file: `write` on the path.
    Upload(&'a FilePath),
    /// Download a file: `read` on the path.
    Download(&'a FilePath),
    /// Stat an entry: `list` or `read` on the path.
    Stat(&'a FilePath),
    /// List a directory: `list` on the directory.
    List(&'a FilePath),
    /// Move: `move` on the source and `write` on the target's parent.
    Move {
        from: &'a FilePath,
        to: &'a FilePath,
    },
    /// Copy: `read` or `copy` on the source and `write` on the target's parent.
    Copy {
        from: &'a FilePath,
        to: &'a FilePath,
    },
    /// Whether an entry is shown in a listing (or an event stream): `list` or `read` on it.
    ListEntry(&'a FilePath),
    /// Create a signed link: `read` on the path.
    LinkCreate(&'a FilePath),
}

/// A refused access: the permission that was missing and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("permission '{permission}' denied on {path}")]
pub struct Denied {
    pub permission: Permission,
    pub path: FilePath,
}

/// Decides whether `principal` may perform `access`, given its tenant's `index`.
///
/// Role `admin` is always allowed: the caller guarantees `index` belongs to the principal's
/// own tenant, which is what confines the bypass. For an alternative (`list` or `read`), the
/// reported permission is the first one named.
pub fn authorize(
    index: &AclIndex,
    principal: &Principal,
    access: Access<'_>,
) -> Result<(), Denied> {
    if principal.is_admin() {
        return Ok(());
    }
    let need = |permissions: &[Permission], path: &FilePath| -> Result<(), Denied> {
        let allowed = permissions
            .iter()
            .any(|p| index.decide(principal, *p, path).allowed);
        if allowed {
            Ok(())
        } else {
            Err(Denied {
                permission: permissions[0],
                path: path.clone(),
            })
        }
    };
    use Permission as P;
    match access {
        Access::Mkdir(path) => need(&[P::Mkdir], path),
        Access::Delete(path) => need(&[P::Delete], path),
        Access::Upload(path) => need(&[P::Write], path),
        Access::Download(path) | Access::LinkCreate(path) => need(&[P::Read], path),
        Access::Stat(path) | Access::ListEntry(path) => need(&[P::List, P::Read], path),
        Access::List(path) => need(&[P::List], path),
        Access::Move { from, to } => {
            need(&[P::Move], from)?;
            need(&[P::Write], &target_parent(to))
        }
        Access::Copy { from, to } => {
            // A deny of `read` stops a copy too: the duplicate would be readable.
            if !index
                .decide_any(principal, &[P::Copy, P::Read], from)
                .allowed
            {
                return Err(Denied {
                    permission: P::Copy,
                    path: from.clone(),
                });
            }
            need(&[P::Write], &target_parent(to))
        }
    }
}

/// The directory a move or copy writes into; `/` for a root-level target (and for the root
/// itself, which no move can target anyway).
fn target_parent(to: &FilePath) -> FilePath {
    to.parent().unwrap_or_else(FilePath::root)
}
