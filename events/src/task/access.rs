//! What a file command needs from the ACL ([`FileCommand::access`]): the API decides it when
//! the command is accepted and the worker decides it again when the task runs, from this one
//! mapping. No IO here.

use super::spec::FileCommand;
use crate::acl::{Access, TreeAccess};

/// The check a command needs: on the paths it names, or over whole subtrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandAccess<'a> {
    /// Decided from the rules on the named paths alone (`mkdir`, non-recursive `delete`).
    Named(Access<'a>),
    /// Decided over the subtrees the command acts on (`move`, `copy`, recursive `delete`).
    Tree(TreeAccess<'a>),
}

impl FileCommand {
    /// The check this command needs (API.md "Authorization (ACL)").
    pub fn access(&self) -> CommandAccess<'_> {
        match self {
            FileCommand::Mkdir { path, .. } => CommandAccess::Named(Access::Mkdir(path)),
            // A non-recursive delete removes a file or an empty directory: nothing below it.
            FileCommand::Delete {
                path,
                recursive: false,
            } => CommandAccess::Named(Access::Delete(path)),
            FileCommand::Delete {
                path,
                recursive: true,
            } => CommandAccess::Tree(TreeAccess::Delete { path }),
            FileCommand::Move {
                from,
                to,
                overwrite,
            } => CommandAccess::Tree(TreeAccess::Move {
                from,
                to,
                overwrite: *overwrite,
            }),
            FileCommand::Copy {
                from,
                to,
                overwrite,
            } => CommandAccess::Tree(TreeAccess::Copy {
                from,
                to,
                overwrite: *overwrite,
            }),
        }
    }
}
