//! Smoke test of the real components testkit starts: a fresh PostgreSQL database and a clamd
//! that knows the EICAR signature, exercised over their real protocols.

use testkit::clamd::{Clamd, EICAR};
use testkit::postgres::TestDb;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Scans `data` with clamd's INSTREAM command and returns its reply (without the trailing NUL).
async fn instream(addr: &str, data: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"zINSTREAM\0").await.unwrap();
    for chunk in data.chunks(16) {
        let len = u32::try_from(chunk.len()).unwrap();
        stream.write_all(&len.to_be_bytes()).await.unwrap();
        stream.write_all(chunk).await.unwrap();
    }
    stream.write_all(&0u32.to_be_bytes()).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    String::from_utf8(reply)
        .unwrap()
        .trim_end_matches('\0')
        .to_string()
}

#[tokio::test]
async fn test_database_answers_queries() {
    let db = TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    assert!(db.url.ends_with(&db.name));
}

#[tokio::test]
async fn clamd_finds_eicar_and_passes_clean_data() {
    let clamd = Clamd::start().await.unwrap();

    let infected = instream(&clamd.addr, EICAR).await;
    assert!(infected.ends_with("FOUND"), "EICAR: {infected}");
    assert!(
        infected.contains("Eicar-Test-Signature"),
        "EICAR: {infected}"
    );

    let clean = instream(&clamd.addr, b"just a harmless report, nothing to see").await;
    assert_eq!(clean, "stream: OK");
}

#[tokio::test]
async fn clamd_restarts_on_the_same_port() {
    let mut clamd = Clamd::start().await.unwrap();
    let port = clamd.port;

    clamd.stop().await;
    assert!(
        !clamd.answers_ping().await,
        "a stopped clamd must not answer"
    );

    clamd.restart().await.unwrap();
    assert_eq!(clamd.port, port);
    assert!(clamd.answers_ping().await);
    assert!(instream(&clamd.addr, EICAR).await.ends_with("FOUND"));
}
