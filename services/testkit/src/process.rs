//! What the server spawners share: probing a free port, and retrying a start on a fresh port
//! because another process may take a probed port before the server binds it.

use anyhow::Context as _;

/// A server process the test kit starts on a port of its choosing.
pub(crate) trait Spawned {
    /// Uses `port` for the next start (and records the address derived from it).
    fn use_port(&mut self, port: u16);
    /// Starts the process and returns once it answers.
    async fn spawn_and_wait(&mut self) -> anyhow::Result<()>;
    /// Kills the process, if it runs.
    async fn stop(&mut self);
}

/// A port nothing listens on right now (another process may still take it first).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("probing a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Starts `server` on a free port, trying up to three ports.
pub(crate) async fn start_on_a_free_port<S: Spawned>(
    mut server: S,
    what: &str,
) -> anyhow::Result<S> {
    let mut last_error = None;
    for _ in 0..3 {
        server.use_port(free_port()?);
        match server.spawn_and_wait().await {
            Ok(()) => return Ok(server),
            Err(error) => {
                server.stop().await;
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("{what} did not start")))
}
