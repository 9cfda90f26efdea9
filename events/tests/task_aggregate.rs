//! The task lifecycle, one behaviour per test, written with cqrs-es `TestFramework`.

use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;
use events::task::{
    FileCommand, Task, TaskCommand, TaskError, TaskEvent, TaskFailure, TaskSpec, UploadSpec,
};
use events::{FilePath, TenantId};
use uuid::Uuid;

type Given = TestFramework<Task>;

fn path(p: &str) -> FilePath {
    FilePath::parse(p).unwrap()
}

fn task_id() -> Uuid {
    Uuid::from_u128(7)
}

fn mkdir_spec() -> TaskSpec {
    TaskSpec::Command(FileCommand::Mkdir {
        path: path("/a/b"),
        parents: true,
    })
}

fn upload_spec() -> UploadSpec {
    UploadSpec {
        path: path("/docs/r.pdf"),
        upload_id: Uuid::from_u128(9),
        size: 3,
        sha256: "ab".repeat(32),
        content_type: "application/pdf".into(),
    }
}

fn request(spec: TaskSpec, hash: Option<&str>) -> TaskCommand {
    TaskCommand::Request {
        task_id: task_id(),
        tenant: TenantId::parse("acme").unwrap(),
        principal: "alice".into(),
        roles: vec![],
        spec,
        idempotency_key: hash.map(|_| "key-1".to_owned()),
        body_hash: hash.map(str::to_owned),
        requested_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
    }
}

fn requested(spec: TaskSpec, hash: Option<&str>) -> TaskEvent {
    let TaskCommand::Request {
        task_id,
        tenant,
        principal,
        roles,
        spec,
        idempotency_key,
        body_hash,
        requested_at,
    } = request(spec, hash)
    else {
        unreachable!()
    };
    TaskEvent::TaskRequested {
        task_id,
        tenant,
        principal,
        roles,
        spec,
        idempotency_key,
        body_hash,
        requested_at,
    }
}

fn failure(code: &str) -> TaskFailure {
    TaskFailure::new(code, "x")
}

#[test]
fn a_request_creates_a_pending_task() {
    Given::with(())
        .given_no_previous_events()
        .when(request(mkdir_spec(), None))
        .then_expect_events(vec![requested(mkdir_spec(), None)]);
}

#[test]
fn an_upload_request_records_the_staged_file_in_the_same_commit() {
    let spec = TaskSpec::Upload(upload_spec());
    Given::with(())
        .given_no_previous_events()
        .when(request(spec.clone(), None))
        .then_expect_events(vec![
            requested(spec, None),
            TaskEvent::FileUploaded {
                upload: upload_spec(),
            },
        ]);
}

#[test]
fn the_same_idempotency_key_and_body_is_a_replay_without_events() {
    Given::with(())
        .given(vec![requested(mkdir_spec(), Some("h1"))])
        .when(request(mkdir_spec(), Some("h1")))
        .then_expect_events(vec![]);
}

#[test]
fn the_same_idempotency_key_with_another_body_is_refused() {
    Given::with(())
        .given(vec![requested(mkdir_spec(), Some("h1"))])
        .when(request(mkdir_spec(), Some("h2")))
        .then_expect_error(TaskError::IdempotencyKeyReused);
}

#[test]
fn a_request_without_key_never_replays_an_existing_task() {
    Given::with(())
        .given(vec![requested(mkdir_spec(), None)])
        .when(request(mkdir_spec(), None))
        .then_expect_error(TaskError::IdempotencyKeyReused);
}

#[test]
fn starting_counts_attempts() {
    Given::with(())
        .given(vec![
            requested(mkdir_spec(), None),
            TaskEvent::TaskStarted { attempt: 1 },
        ])
        .when(TaskCommand::Start)
        .then_expect_events(vec![TaskEvent::TaskStarted { attempt: 2 }]);
}

#[test]
fn success_records_the_domain_fact_with_the_outcome() {
    Given::with(())
        .given(vec![
            requested(mkdir_spec(), None),
            TaskEvent::TaskStarted { attempt: 1 },
        ])
        .when(TaskCommand::Succeed {
            created_parents: vec![],
        })
        .then_expect_events(vec![
            TaskEvent::DirCreated {
                path: path("/a/b"),
                parents: true,
            },
            TaskEvent::TaskSucceeded,
        ]);
}

#[test]
fn mkdir_with_parents_records_every_directory_it_created_top_down() {
    // The worker reports /a as created (in any order, with noise that is not an ancestor):
    // each created directory gets its own event, then the requested one.
    Given::with(())
        .given(vec![
            requested(mkdir_spec(), None),
            TaskEvent::TaskStarted { attempt: 1 },
        ])
        .when(TaskCommand::Succeed {
            created_parents: vec![path("/a"), path("/a/b"), path("/x"), path("/a")],
        })
        .then_expect_events(vec![
            TaskEvent::DirCreated {
                path: path("/a"),
                parents: false,
            },
            TaskEvent::DirCreated {
                path: path("/a/b"),
                parents: true,
            },
            TaskEvent::TaskSucceeded,
        ]);
}

#[test]
fn a_task_cannot_succeed_before_it_started() {
    Given::with(())
        .given(vec![requested(mkdir_spec(), None)])
        .when(TaskCommand::Succeed {
            created_parents: vec![],
        })
        .then_expect_error(TaskError::NotRunning);
}

#[test]
fn a_pending_command_task_can_start_and_succeed_in_one_commit() {
    Given::with(())
        .given(vec![requested(mkdir_spec(), None)])
        .when(TaskCommand::StartAndSucceed {
            created_parents: vec![],
        })
        .then_expect_events(vec![
            TaskEvent::TaskStarted { attempt: 1 },
            TaskEvent::DirCreated {
                path: path("/a/b"),
                parents: true,
            },
            TaskEvent::TaskSucceeded,
        ]);
    // A redo of a task already started only succeeds; it is not started twice.
    Given::with(())
        .given(vec![
            requested(mkdir_spec(), None),
            TaskEvent::TaskStarted { attempt: 1 },
        ])
        .when(TaskCommand::StartAndSucceed {
            created_parents: vec![],
        })
        .then_expect_events(vec![
            TaskEvent::DirCreated {
                path: path("/a/b"),
                parents: true,
            },
            TaskEvent::TaskSucceeded,
        ]);
    // Never for an upload (it succeeds by promotion), nor for a terminal task.
    Given::with(())
        .given(vec![requested(TaskSpec::Upload(upload_spec()), None)])
        .when(TaskCommand::StartAndSucceed {
            created_parents: vec![],
        })
        .then_expect_error(TaskError::WrongKind);
    Given::with(())
        .given(vec![
            requested(mkdir_spec(), None),
            TaskEvent::TaskFailed {
                error: failure("not_found"),
            },
        ])
        .when(TaskCommand::StartAndSucceed {
            created_parents: vec![],
        })
        .then_expect_error(TaskError::AlreadyTerminal);
}

#[test]
fn a_terminal_task_cannot_change_again() {
    Given::with(())
        .given(vec![
            requested(mkdir_spec(), None),
            TaskEvent::TaskFailed {
                error: failure("not_found"),
            },
        ])
        .when(TaskCommand::Start)
        .then_expect_error(TaskError::AlreadyTerminal);
}

#[test]
fn commands_on_an_unknown_task_are_refused() {
    Given::with(())
        .given_no_previous_events()
        .when(TaskCommand::Start)
        .then_expect_error(TaskError::NotRequested);
}

#[test]
fn dead_lettering_keeps_the_attempt_count() {
    Given::with(())
        .given(vec![
            requested(mkdir_spec(), None),
            TaskEvent::TaskStarted { attempt: 3 },
        ])
        .when(TaskCommand::DeadLetter {
            error: failure("storage_error"),
            failed_attempts: 2,
        })
        .then_expect_events(vec![TaskEvent::TaskDeadLettered {
            error: failure("storage_error"),
            attempts: 3,
        }]);
}

#[test]
fn a_dead_letter_counts_the_failed_attempts_of_work_that_never_started() {
    // An upload's promotion fails without a TaskStarted: the worker's count is what counts.
    Given::with(())
        .given(vec![requested(mkdir_spec(), None)])
        .when(TaskCommand::DeadLetter {
            error: failure("storage_error"),
            failed_attempts: 3,
        })
        .then_expect_events(vec![TaskEvent::TaskDeadLettered {
            error: failure("storage_error"),
            attempts: 3,
        }]);
}

#[test]
fn only_dead_lettered_tasks_can_be_retried() {
    Given::with(())
        .given(vec![requested(mkdir_spec(), None)])
        .when(TaskCommand::Retry { by: "admin".into() })
        .then_expect_error(TaskError::NotDeadLettered);
    Given::with(())
        .given(vec![
            requested(mkdir_spec(), None),
            TaskEvent::TaskDeadLettered {
                error: failure("timeout"),
                attempts: 10,
            },
        ])
        .when(TaskCommand::Retry { by: "admin".into() })
        .then_expect_events(vec![TaskEvent::TaskRetried { by: "admin".into() }]);
}

#[test]
fn an_infected_upload_is_quarantined_and_fails_in_one_commit() {
    let spec = TaskSpec::Upload(upload_spec());
    Given::with(())
        .given(vec![
            requested(spec, None),
            TaskEvent::FileUploaded {
                upload: upload_spec(),
            },
        ])
        .when(TaskCommand::RecordScan {
            clean: false,
            signature: Some("Eicar".into()),
        })
        .then_expect_events(vec![
            TaskEvent::FileScanned {
                clean: false,
                signature: Some("Eicar".into()),
            },
            TaskEvent::FileQuarantined {
                upload: upload_spec(),
                signature: Some("Eicar".into()),
            },
            TaskEvent::TaskFailed {
                error: TaskFailure::new(
                    "malware_detected",
                    "the upload was found infected and is quarantined",
                ),
            },
        ]);
}

#[test]
fn an_upload_is_promoted_only_after_a_clean_scan() {
    let spec = TaskSpec::Upload(upload_spec());
    let promote = || TaskCommand::Promote {
        version: "v1".into(),
        previous_version: None,
        created_parents: vec![],
    };
    Given::with(())
        .given(vec![requested(spec.clone(), None)])
        .when(promote())
        .then_expect_error(TaskError::NotScannedClean);
    Given::with(())
        .given(vec![
            requested(spec, None),
            TaskEvent::FileScanned {
                clean: true,
                signature: None,
            },
        ])
        .when(promote())
        .then_expect_events(vec![
            TaskEvent::FileAvailable {
                upload: upload_spec(),
                version: "v1".into(),
                previous_version: None,
            },
            TaskEvent::TaskSucceeded,
        ]);
}

#[test]
fn an_upload_records_the_directories_it_created_above_the_file() {
    let spec = TaskSpec::Upload(upload_spec());
    Given::with(())
        .given(vec![
            requested(spec, None),
            TaskEvent::FileScanned {
                clean: true,
                signature: None,
            },
        ])
        .when(TaskCommand::Promote {
            version: "v1".into(),
            previous_version: None,
            // The file itself is no directory the upload created; /other is not above it.
            created_parents: vec![path("/docs/r.pdf"), path("/docs"), path("/other")],
        })
        .then_expect_events(vec![
            TaskEvent::DirCreated {
                path: path("/docs"),
                parents: false,
            },
            TaskEvent::FileAvailable {
                upload: upload_spec(),
                version: "v1".into(),
                previous_version: None,
            },
            TaskEvent::TaskSucceeded,
        ]);
}

#[test]
fn a_redelivered_scan_verdict_changes_nothing() {
    let spec = TaskSpec::Upload(upload_spec());
    Given::with(())
        .given(vec![
            requested(spec, None),
            TaskEvent::FileScanned {
                clean: true,
                signature: None,
            },
        ])
        .when(TaskCommand::RecordScan {
            clean: false,
            signature: None,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_file_command_task_refuses_upload_commands() {
    Given::with(())
        .given(vec![requested(mkdir_spec(), None)])
        .when(TaskCommand::RecordScan {
            clean: true,
            signature: None,
        })
        .then_expect_error(TaskError::WrongKind);
}

#[test]
fn entries_inside_a_recursive_command_get_their_own_events_and_are_counted() {
    let from = FilePath::parse("/a").unwrap();
    let to = FilePath::parse("/b").unwrap();
    let spec = TaskSpec::Command(FileCommand::Copy {
        from: from.clone(),
        to: to.clone(),
        overwrite: false,
    });
    let inner = FilePath::parse("/a/x/y").unwrap();
    Given::with(())
        .given(vec![
            requested(spec.clone(), None),
            TaskEvent::TaskStarted { attempt: 1 },
        ])
        .when(TaskCommand::ReportEntries {
            entries: vec![inner.clone()],
        })
        .then_expect_events(vec![TaskEvent::EntryCopied {
            from: inner.clone(),
            to: FilePath::parse("/b/x/y").unwrap(),
            overwrite: false,
            within: Some(from.clone()),
        }]);
    // The root itself, or anything outside the tree, is refused.
    for outside in ["/a", "/ab", "/c/x"] {
        Given::with(())
            .given(vec![
                requested(spec.clone(), None),
                TaskEvent::TaskStarted { attempt: 1 },
            ])
            .when(TaskCommand::ReportEntries {
                entries: vec![FilePath::parse(outside).unwrap()],
            })
            .then_expect_error(TaskError::OutsideTheTree);
    }
    // Not before the task runs.
    Given::with(())
        .given(vec![requested(spec.clone(), None)])
        .when(TaskCommand::ReportEntries {
            entries: vec![inner.clone()],
        })
        .then_expect_error(TaskError::NotRunning);
    // Reported entries are counted; a retry starts a new count.
    let mut task = Task::default();
    for event in [
        requested(spec.clone(), None),
        TaskEvent::TaskStarted { attempt: 1 },
        TaskEvent::EntryCopied {
            from: inner.clone(),
            to: FilePath::parse("/b/x/y").unwrap(),
            overwrite: false,
            within: Some(from.clone()),
        },
        TaskEvent::EntryCopied {
            from,
            to,
            overwrite: false,
            within: None,
        },
    ] {
        cqrs_es::Aggregate::apply(&mut task, event);
    }
    assert_eq!(
        task.reported, 1,
        "the root's own event is not an entry report"
    );
    cqrs_es::Aggregate::apply(&mut task, TaskEvent::TaskRetried { by: "admin".into() });
    assert_eq!(task.reported, 0);
}

#[test]
fn a_new_command_queues_worker_work_a_new_upload_waits_for_its_scan() {
    assert!(requested(mkdir_spec(), None).queues_work());
    let upload = requested(TaskSpec::Upload(upload_spec()), None);
    assert!(
        !upload.queues_work(),
        "the scanner's verdict, not the request, brings an upload to the worker"
    );
    assert!(TaskEvent::TaskRetried { by: "ops".into() }.queues_work());
    assert!(!TaskEvent::TaskStarted { attempt: 1 }.queues_work());
}
