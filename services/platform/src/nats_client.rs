//! The NATS connection every role opens: `FE_NATS_URL` names one server or, comma-separated,
//! the nodes of a cluster.
//!
//! All listed servers go into the client's server pool, so the first connection may land on
//! any of them and a lost connection is re-established on another node: with the event stream
//! at replicas 3 (`FE_NATS_REPLICAS=3`) a role keeps working while one node is down. The client
//! retries for ever (a role without NATS can do nothing useful; its readiness probe reports
//! the outage) and also learns further cluster members the servers announce. Requests made
//! while disconnected fail and are retried by their callers (the API answers 503, consumers
//! re-subscribe), so nothing acknowledged depends on a particular node.
//!
//! Parsing is strict: an empty entry, an unknown scheme or an unparsable address is a
//! configuration error at start, never a silently shorter list. Addresses may carry
//! credentials (`nats://user:pass@host`), so error messages name the entry's position, not
//! its text.

use async_nats::ServerAddr;

/// Why `FE_NATS_URL` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NatsUrlError {
    #[error("FE_NATS_URL names no server")]
    Empty,
    #[error("FE_NATS_URL entry {position} is empty (stray comma?)")]
    EmptyEntry { position: usize },
    #[error("FE_NATS_URL entry {position} is not a NATS server address (nats://, tls://, ws:// or wss://)")]
    Invalid { position: usize },
}

/// Why the connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NatsConnectError {
    #[error(transparent)]
    Url(#[from] NatsUrlError),
    #[error("connecting to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

/// Parses a comma-separated server list (`nats://a:4222,nats://b:4222`); entries are trimmed,
/// `host:port` without a scheme means `nats://host:port`. Positions in errors count from 1.
pub fn servers(list: &str) -> Result<Vec<ServerAddr>, NatsUrlError> {
    if list.trim().is_empty() {
        return Err(NatsUrlError::Empty);
    }
    list.split(',')
        .enumerate()
        .map(|(index, entry)| {
            let position = index + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(NatsUrlError::EmptyEntry { position });
            }
            let addr: ServerAddr = entry
                .parse()
                .map_err(|_| NatsUrlError::Invalid { position })?;
            // `Url` accepts `nats://` with no host; a server pool entry without one cannot work.
            if addr.host().is_empty() {
                return Err(NatsUrlError::Invalid { position });
            }
            Ok(addr)
        })
        .collect()
}

/// Connects to the servers of `list` under the client name `name`, retrying the first
/// connection and every reconnection across all of them until it succeeds.
pub async fn connect(list: &str, name: &str) -> Result<async_nats::Client, NatsConnectError> {
    let pool = servers(list)?;
    // A `tls://` server needs a default crypto provider (see `crate::tls`).
    crate::tls::install_default_crypto_provider();
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            // Connection events carry no credentials; they tell operators which node failed.
            match event {
                async_nats::Event::Connected => tracing::info!("nats: connected"),
                async_nats::Event::Disconnected => {
                    tracing::warn!("nats: disconnected, reconnecting")
                }
                other => tracing::info!(event = %other, "nats: connection event"),
            }
        })
        .connect(pool)
        .await?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_is_a_list_of_one() {
        let pool = servers("nats://127.0.0.1:4222").unwrap();
        assert_eq!(pool.len(), 1);
        assert_eq!((pool[0].host(), pool[0].port()), ("127.0.0.1", 4222));
    }

    #[test]
    fn several_servers_keep_their_order_and_are_trimmed() {
        let pool = servers(" nats://a:4001, nats://b:4002 ,c:4003").unwrap();
        let got: Vec<(String, u16)> = pool
            .iter()
            .map(|s| (s.host().to_owned(), s.port()))
            .collect();
        assert_eq!(
            got,
            [("a".into(), 4001), ("b".into(), 4002), ("c".into(), 4003)]
        );
    }

    #[test]
    fn empty_lists_and_entries_are_refused() {
        assert!(matches!(servers(""), Err(NatsUrlError::Empty)));
        assert!(matches!(
            servers(" , "),
            Err(NatsUrlError::EmptyEntry { position: 1 })
        ));
        assert!(matches!(
            servers("nats://a:1,,nats://b:2"),
            Err(NatsUrlError::EmptyEntry { position: 2 })
        ));
        assert!(matches!(
            servers("nats://a:1,"),
            Err(NatsUrlError::EmptyEntry { position: 2 })
        ));
    }

    #[test]
    fn hostile_entries_are_refused_without_echoing_them() {
        for bad in [
            "http://a:4222",
            "file:///etc/passwd",
            "nats://",
            "nats://a:99999",
            "nats://user:secret@a:4222,javascript:alert(1)",
        ] {
            let err = servers(bad).expect_err(bad);
            assert!(matches!(err, NatsUrlError::Invalid { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        let long = format!("nats://{}:4222", "a".repeat(100_000));
        // A huge host is the server's problem to resolve; it must not panic here.
        let _ = servers(&long);
    }

    #[test]
    fn credentials_in_an_address_are_kept_for_the_client() {
        let pool = servers("nats://user:pw@a:4222").unwrap();
        assert!(pool[0].has_user_pass());
    }
}
