//! The fault suite: delivery proofs with counts. Each scenario drives the platform as separate
//! `file-engine` processes through the HTTP API, injects one kind of fault (kill -9 of
//! workers, nats-server, the stream leader of a 3-node cluster, PostgreSQL, clamd; a poison
//! effect; an oversized chunked upload), judges the outcome through the API and the event log,
//! and prints one line:
//!
//! `scenario=<name> sent=N acked=N terminal=N succeeded=N failed=N duplicated=N lost=N`
//!
//! failing when `lost` or `duplicated` is not zero (see `faults/tally.rs` for what they count).
//! The quick form runs with the normal test command; `FE_FAULTS_FULL=1` runs the long form
//! (500 tasks, several fault rounds):
//!
//! `FE_FAULTS_FULL=1 cargo nextest run -p file-engine --test faults --no-capture`
//!
//! `FE_FAULTS_SEED=<n>` repeats the random workload and kill moments of `worker_kill`.

#[path = "faults/chunked.rs"]
mod chunked;
#[path = "faults/infra.rs"]
mod infra;
#[path = "faults/load.rs"]
mod load;
#[path = "faults/model.rs"]
mod model;
#[path = "faults/order.rs"]
mod order;
#[path = "faults/poison.rs"]
mod poison;
#[path = "faults/rig.rs"]
mod rig;
#[path = "faults/scans.rs"]
mod scans;
#[path = "faults/tally.rs"]
mod tally;
#[path = "faults/worker_kill.rs"]
mod worker_kill;

/// How long a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Part of every test run: fewer tasks, one fault round.
    Quick,
    /// `FE_FAULTS_FULL=1`: the sizes of the issue (500 tasks) and several fault rounds.
    Full,
}

impl Form {
    /// How long acknowledged tasks may take to finish after the load stopped.
    fn patience(self) -> std::time::Duration {
        std::time::Duration::from_secs(match self {
            Form::Quick => 150,
            Form::Full => 600,
        })
    }

    fn from_env() -> Form {
        match std::env::var("FE_FAULTS_FULL").as_deref() {
            Ok("1") | Ok("true") => Form::Full,
            _ => Form::Quick,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_kill() {
    worker_kill::run(Form::from_env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart() {
    infra::nats_restart(Form::from_env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leader() {
    infra::cluster_leader(Form::from_env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart() {
    infra::postgres_restart(Form::from_env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clamd_kill() {
    scans::clamd_kill(Form::from_env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_task() {
    poison::poison(Form::from_env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_past_the_limit() {
    chunked::chunked_413(Form::from_env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_paths_in_log_order() {
    order::overlapping_paths(Form::from_env()).await;
}
