//! A clamd client for the `INSTREAM` protocol over TCP.
//!
//! Owns the conversation with clamd: `zPING` for readiness and `zINSTREAM` for scanning. The
//! bytes to scan are streamed from any `AsyncRead` in chunks of [`ClamdClient::chunk_size`]
//! bytes, each sent as a 4-byte big-endian length followed by the data, then a zero length
//! ends the stream and clamd answers with one line (see [`reply`]). Memory stays bounded by
//! one chunk buffer whatever the size of the upload (unlike scanners that read whole files,
//! cf. owncloud/ocis#6803).
//!
//! Failure handling, and why:
//! * Connecting is bounded by [`CONNECT_TIMEOUT`] (or the scan timeout if shorter); refused
//!   or timed-out connections are [`ClamdError::Unavailable`], so callers can tell "clamd is
//!   down" from "this file is a problem".
//! * The whole exchange (connect excluded) is bounded by [`ClamdClient::timeout`]:
//!   [`ClamdError::Timeout`].
//! * Over its `StreamMaxLength`, clamd answers `INSTREAM size limit exceeded. ERROR` and
//!   closes the socket while we are still sending, so a write fails with a broken pipe or a
//!   reset. The client then still reads the reply (INFRA.md) and reports
//!   [`ClamdError::TooLarge`]; only if no reply can be read is the write error reported.
//!
//! This module never logs file content and never decides what a verdict means for a task.

mod reply;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Default size of one `INSTREAM` chunk: 1 MiB (64 KiB chunks were 3× slower, INFRA.md).
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
/// Upper bound for establishing the TCP connection to clamd.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What clamd found in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// clamd matched a signature; `signature` is its name as clamd reported it.
    Infected {
        signature: String,
    },
}

/// Why a scan or ping produced no verdict. Messages never contain file content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClamdError {
    /// No connection could be made (refused, unreachable, or connect timed out).
    #[error("clamd unavailable at {addr}: {reason}")]
    Unavailable { addr: String, reason: String },
    /// The exchange did not complete within the scan timeout.
    #[error("clamd did not answer within {0:?}")]
    Timeout(Duration),
    /// The stream exceeds clamd's `StreamMaxLength`; resending it will fail the same way.
    #[error("the stream exceeds clamd's size limit (StreamMaxLength)")]
    TooLarge,
    /// clamd answered something other than a verdict (including its own `... ERROR`s).
    #[error("clamd protocol: {0}")]
    Protocol(String),
    /// Reading the bytes to scan, or the socket, failed midway.
    #[error("i/o during scan: {0}")]
    Io(String),
}

/// Connection settings for one clamd; cheap to clone, one TCP connection per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamdClient {
    /// `host:port` of clamd's `TCPSocket` (`FE_CLAMD_ADDR`).
    pub addr: String,
    /// Bound for a whole scan (`FE_SCAN_TIMEOUT_S`) or ping, after connecting.
    pub timeout: Duration,
    /// Bytes per `INSTREAM` chunk; must stay below clamd's `StreamMaxLength`.
    pub chunk_size: usize,
}

impl ClamdClient {
    /// A client for `addr` with the given whole-scan timeout and 1 MiB chunks.
    pub fn new(addr: impl Into<String>, timeout: Duration) -> Self {
        ClamdClient {
            addr: addr.into(),
            timeout,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }

    /// `zPING` → `PONG`: clamd is up and has loaded its database.
    #[tracing::instrument(skip_all, fields(clamd = %self.addr))]
    pub async fn ping(&self) -> Result<(), ClamdError> {
        let mut socket = self.connect().await?;
        let exchange = async {
            socket.write_all(b"zPING\0").await.map_err(io_error)?;
            read_reply(&mut socket).await
        };
        let raw = self.bounded(exchange).await?;
        reply::parse_ping_reply(&raw)
    }

    /// Streams everything `reader` yields to clamd and returns its verdict.
    #[tracing::instrument(skip_all, fields(clamd = %self.addr, bytes = tracing::field::Empty))]
    pub async fn scan<R: AsyncRead + Unpin>(&self, reader: R) -> Result<Verdict, ClamdError> {
        let mut socket = self.connect().await?;
        let raw = self.bounded(self.instream(&mut socket, reader)).await?;
        reply::parse_scan_reply(&raw)
    }

    /// The `INSTREAM` exchange on a connected socket; returns clamd's raw reply.
    async fn instream<R: AsyncRead + Unpin>(
        &self,
        socket: &mut TcpStream,
        reader: R,
    ) -> Result<Vec<u8>, ClamdError> {
        socket.write_all(b"zINSTREAM\0").await.map_err(io_error)?;
        match send_chunks(socket, reader, self.chunk_size.max(1)).await {
            Ok(sent) => {
                tracing::Span::current().record("bytes", sent);
                read_reply(socket).await
            }
            // clamd stops reading and closes when it refuses the stream (size limit): its
            // reply explains why, so it takes precedence over our write error.
            Err(SendError::Socket(write_error)) => match read_reply(socket).await {
                Ok(raw) if !raw.is_empty() => Ok(raw),
                _ => Err(io_error(write_error)),
            },
            Err(SendError::Source(read_error)) => Err(ClamdError::Io(format!(
                "reading the bytes to scan: {read_error}"
            ))),
        }
    }

    async fn connect(&self) -> Result<TcpStream, ClamdError> {
        let unavailable = |reason: String| ClamdError::Unavailable {
            addr: self.addr.clone(),
            reason,
        };
        let bound = CONNECT_TIMEOUT.min(self.timeout);
        let socket = tokio::time::timeout(bound, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| unavailable(format!("connect timed out after {bound:?}")))?
            .map_err(|e| unavailable(e.to_string()))?;
        // Chunks are written whole (header and data in one write), so Nagle only adds delay.
        socket
            .set_nodelay(true)
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(socket)
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, ClamdError>>,
    ) -> Result<T, ClamdError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClamdError::Timeout(self.timeout))?
    }
}

/// Which side of the copy failed.
enum SendError {
    Source(std::io::Error),
    Socket(std::io::Error),
}

/// Sends `reader` as length-prefixed chunks and the zero-length terminator; returns the
/// number of payload bytes sent. One buffer holds the 4-byte header and the chunk, so each
/// chunk is one write and the buffer is the only memory used.
async fn send_chunks<R: AsyncRead + Unpin>(
    socket: &mut TcpStream,
    mut reader: R,
    chunk_size: usize,
) -> Result<u64, SendError> {
    let mut buffer = vec![0u8; 4 + chunk_size];
    let mut sent = 0u64;
    loop {
        let filled = fill(&mut reader, &mut buffer[4..])
            .await
            .map_err(SendError::Source)?;
        if filled == 0 {
            break;
        }
        // `chunk_size` is a configured size far below 4 GiB; refuse rather than wrap.
        let length = u32::try_from(filled)
            .map_err(|_| SendError::Source(std::io::Error::other("chunk larger than 4 GiB")))?;
        buffer[..4].copy_from_slice(&length.to_be_bytes());
        socket
            .write_all(&buffer[..4 + filled])
            .await
            .map_err(SendError::Socket)?;
        sent += u64::from(length);
    }
    socket
        .write_all(&0u32.to_be_bytes())
        .await
        .map_err(SendError::Socket)?;
    Ok(sent)
}

/// Reads until `buffer` is full or the reader ends; returns the bytes read. Full chunks keep
/// the per-chunk overhead low even when the reader returns small pieces.
async fn fill<R: AsyncRead + Unpin>(reader: &mut R, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let n = reader.read(&mut buffer[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Reads clamd's reply up to its NUL terminator or the end of the connection.
async fn read_reply(socket: &mut TcpStream) -> Result<Vec<u8>, ClamdError> {
    let mut reply = Vec::with_capacity(64);
    let mut piece = [0u8; 512];
    loop {
        let n = socket.read(&mut piece).await.map_err(io_error)?;
        if n == 0 {
            return Ok(reply);
        }
        reply.extend_from_slice(&piece[..n]);
        if reply.contains(&0) {
            return Ok(reply);
        }
        if reply.len() > reply::MAX_REPLY_BYTES {
            return Err(ClamdError::Protocol("reply too long".into()));
        }
    }
}

fn io_error(e: std::io::Error) -> ClamdError {
    ClamdError::Io(e.to_string())
}
