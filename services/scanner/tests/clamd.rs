//! The clamd client against a real clamd (testkit): verdicts, streaming across chunks, the
//! size limit, and a clamd that is down or silent. Each test owns its clamd.

use std::time::{Duration, Instant};

use scanner::clamd::{ClamdClient, ClamdError, Verdict, DEFAULT_CHUNK_SIZE};
use testkit::clamd::{Clamd, EICAR};
use tokio::io::AsyncReadExt;

const MIB: usize = 1 << 20;

fn client(clamd: &Clamd) -> ClamdClient {
    ClamdClient::new(clamd.addr.clone(), Duration::from_secs(60))
}

/// Clean, varied bytes (not all zeros, so the stream is not trivially compressible).
fn clean_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Adds a body signature for EICAR (matches anywhere in a file) next to testkit's hash
/// signature (which only matches a file that is exactly EICAR), and restarts clamd with it.
async fn with_body_signature(clamd: &mut Clamd) {
    let hex: String = EICAR.iter().map(|b| format!("{b:02x}")).collect();
    let line = format!("Eicar-Body-Test:0:*:{hex}\n");
    std::fs::write(clamd.dir().join("db/body.ndb"), line).unwrap();
    clamd.restart().await.unwrap();
}

#[tokio::test]
async fn eicar_is_infected_and_named() {
    let clamd = Clamd::start().await.unwrap();
    let verdict = client(&clamd).scan(EICAR).await.unwrap();
    match verdict {
        Verdict::Infected { signature } => assert!(signature.contains("Eicar"), "{signature}"),
        Verdict::Clean => panic!("EICAR scanned clean"),
    }
}

#[tokio::test]
async fn clean_bytes_are_clean_and_ping_answers() {
    let clamd = Clamd::start().await.unwrap();
    let client = client(&clamd);
    client.ping().await.unwrap();
    assert_eq!(
        client.scan(&b"hello, world\n"[..]).await.unwrap(),
        Verdict::Clean
    );
    assert_eq!(client.scan(&b""[..]).await.unwrap(), Verdict::Clean);
}

#[tokio::test]
async fn a_multi_chunk_clean_stream_is_clean() {
    let clamd = Clamd::start().await.unwrap();
    let data = clean_bytes(5 * MIB + 123);
    assert!(data.len() > 5 * DEFAULT_CHUNK_SIZE);
    assert_eq!(
        client(&clamd).scan(&data[..]).await.unwrap(),
        Verdict::Clean
    );
}

#[tokio::test]
async fn eicar_after_three_mib_straddling_a_chunk_boundary_is_found() {
    let mut clamd = Clamd::start().await.unwrap();
    with_body_signature(&mut clamd).await;
    let mut data = clean_bytes(3 * MIB - 34);
    data.extend_from_slice(EICAR);
    data.extend_from_slice(&clean_bytes(MIB));
    // A reader that hands out small pieces, so chunks are assembled from many reads.
    let reader = SmallReads {
        data: &data,
        piece: 7_001,
    };
    let verdict = client(&clamd).scan(reader).await.unwrap();
    assert!(
        matches!(&verdict, Verdict::Infected { signature } if signature.contains("Eicar")),
        "{verdict:?}"
    );
    // Control: the same clean bytes without EICAR are clean on this clamd.
    let clean = clean_bytes(4 * MIB);
    assert_eq!(
        client(&clamd).scan(&clean[..]).await.unwrap(),
        Verdict::Clean
    );
}

/// A reader over `data` that returns at most `piece` bytes per read.
struct SmallReads<'a> {
    data: &'a [u8],
    piece: usize,
}

impl tokio::io::AsyncRead for SmallReads<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.data.len().min(self.piece).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn over_clamds_stream_limit_is_too_large() {
    let clamd = Clamd::start().await.unwrap();
    // testkit's clamd has StreamMaxLength 200M; stream 201 MiB generated on the fly.
    let reader = tokio::io::repeat(b'a').take(201 * MIB as u64);
    let started = Instant::now();
    let err = client(&clamd).scan(reader).await.unwrap_err();
    assert_eq!(err, ClamdError::TooLarge, "after {:?}", started.elapsed());
    // clamd is fine afterwards.
    assert!(matches!(
        client(&clamd).scan(EICAR).await,
        Ok(Verdict::Infected { .. })
    ));
}

#[tokio::test]
async fn a_stopped_clamd_is_unavailable() {
    let mut clamd = Clamd::start().await.unwrap();
    let client = client(&clamd);
    client.ping().await.unwrap();
    clamd.stop().await;
    let err = client.scan(EICAR).await.unwrap_err();
    assert!(matches!(err, ClamdError::Unavailable { .. }), "{err:?}");
    assert!(matches!(
        client.ping().await,
        Err(ClamdError::Unavailable { .. })
    ));
    clamd.restart().await.unwrap();
    assert!(matches!(
        client.scan(EICAR).await,
        Ok(Verdict::Infected { .. })
    ));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and reads everything, but never replies.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let silent = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = socket.read_to_end(&mut sink).await;
    });
    let client = ClamdClient::new(addr, Duration::from_millis(500));
    let started = Instant::now();
    let err = client.scan(&clean_bytes(1000)[..]).await.unwrap_err();
    assert_eq!(err, ClamdError::Timeout(Duration::from_millis(500)));
    assert!(started.elapsed() < Duration::from_secs(5));
    silent.abort();
}
