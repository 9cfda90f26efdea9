//! The HTTP server around the router: bounded connections, bounded header reads, drain on
//! shutdown. (`axum::serve` offers neither a connection cap nor hyper's header-read timer.)
//!
//! * At most [`ApiSettings::max_connections`] connections are open; further ones wait in the
//!   listen backlog until one closes (the kernel queues them; nothing is read meanwhile).
//! * A client must send complete request headers within [`ApiSettings::header_timeout`]
//!   (hyper's `header_read_timeout`, HTTP/1): a slow-loris client is disconnected, and so is
//!   one that connects and sends nothing (its first byte must come within the same time).
//! * Request bodies may pause at most [`ApiSettings::body_idle_timeout`] between chunks (the
//!   router's `RequestBodyTimeoutLayer`): the request then fails as a client error, with no
//!   partial effect.
//! * On shutdown it stops accepting, lets requests in flight finish and closes idle
//!   keep-alive connections; the process deadline bounds how long that may take.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::state::ApiSettings;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &ApiSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => slot,
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break }; // never closed
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "api: accepting a connection failed");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        metrics::gauge!("fe_http_connections").increment(1.0);
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_timeout = settings.header_timeout;
        tokio::spawn(async move {
            // hyper's header timer starts once it knows the protocol, which it learns from
            // the first bytes: a client that sends nothing at all is bounded here.
            let mut first = [0u8; 1];
            if let Ok(Ok(1)) = tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                if let Err(error) = watcher.watch(connection).await {
                    // Timeouts and resets by clients end up here; they are not server faults.
                    tracing::debug!(%error, "api: connection ended with an error");
                }
            }
            metrics::gauge!("fe_http_connections").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
