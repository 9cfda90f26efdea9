//! Every entry inside the tree of a recursive `move`, `copy` or `delete` gets its own event
//! (API.md: "every entry that comes into existence or goes away has its own event"), while the
//! catalogue still changes the whole tree with the root's one event.
//!
//! The entries come from the catalogue page by page (path order; the worker's turn keeps the
//! tree unchanged until the task ends) and are appended to the task in chunks of
//! [`REPORT_CHUNK`] (`TaskCommand::ReportEntries`), before the success, so neither the
//! worker's memory nor a commit grows with the tree (NATS caps a message at 1 MiB by default).
//! The task counts the entries it reported (`Task::reported`): a redelivery after a crash
//! lists the tree again from there, so no entry is reported twice and none is missed. Entries replaced at the target of an
//! overwriting move or copy are not reported one by one (the root's event names the target).

use events::task::{FileCommand, Task, TaskCommand};
use events::FilePath;
use platform::catalogue::{PageStart, TakenAlong};
use platform::event_log::{Loaded, LoggedCommit};

use crate::run::{execute, WorkerDeps};

/// Entries per commit (a few hundred bytes each).
pub const REPORT_CHUNK: usize = 500;

/// Reports the entries inside the tree `cmd` acts on that the task has not reported yet.
pub async fn report_entries(
    deps: &WorkerDeps,
    commit: &LoggedCommit,
    loaded: &mut Loaded<Task>,
    cmd: &FileCommand,
) -> Result<(), String> {
    let (root, taken) = match cmd {
        FileCommand::Move { from, .. } => (from, TakenAlong::AllButPlaceholders),
        FileCommand::Copy { from, .. } => (from, TakenAlong::Available),
        FileCommand::Delete {
            path,
            recursive: true,
        } => (path, TakenAlong::AllButPlaceholders),
        FileCommand::Delete { .. } | FileCommand::Mkdir { .. } => return Ok(()),
    };
    // Page by page, so neither memory nor a commit grows with the tree; the first page
    // starts after what the task already reported (a redo), the next ones after the last
    // entry of the page before.
    let mut last: Option<FilePath> = None;
    loop {
        let start = match &last {
            None => PageStart::Skipping(loaded.aggregate.reported),
            Some(entry) => PageStart::After(entry),
        };
        let page = platform::catalogue::entries_inside(
            &deps.pool,
            &commit.tenant,
            root,
            taken,
            start,
            REPORT_CHUNK,
        )
        .await
        .map_err(|e| e.to_string())?;
        let (Some(page_last), full) = (page.last().cloned(), page.len() == REPORT_CHUNK) else {
            return Ok(());
        };
        // Reports are several commits: the task is running from the first one on.
        crate::run::start(deps, commit, loaded).await?;
        let report = TaskCommand::ReportEntries { entries: page };
        execute(deps, commit, Some(&mut *loaded), report).await?;
        if !full {
            return Ok(());
        }
        last = Some(page_last);
    }
}
