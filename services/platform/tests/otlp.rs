//! OTLP trace export end to end: a span joined to a caller's `traceparent` reaches a local
//! collector stand-in as an OTLP/HTTP protobuf POST to `/v1/traces` carrying that trace id.
//!
//! The global subscriber can be installed once per process, so this is the only test here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One request the stand-in collector received.
struct Received {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// Serves every connection on its own thread and reports each request on `tx`.
fn collector() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || serve(conn, tx));
        }
    });
    (format!("http://{addr}"), rx)
}

/// Reads HTTP/1.1 requests off one (possibly kept-alive) connection until it closes.
fn serve(conn: TcpStream, tx: mpsc::Sender<Received>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "content-type" => content_type = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        writer.write_all(reply.as_bytes()).unwrap();
        let _ = tx.send(Received {
            path,
            content_type,
            body,
        });
    }
}

#[test]
fn spans_are_exported_with_the_callers_trace_id() {
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let trace_bytes = hex::decode(trace_id).unwrap();
    let (endpoint, received) = collector();

    let guard = platform::telemetry::init("info", Some(&endpoint));
    assert!(guard.exporting());
    let span = tracing::info_span!("request", route = "/v1/test");
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    assert!(platform::telemetry::set_parent_from_traceparent(
        &span,
        &traceparent
    ));
    assert!(!platform::telemetry::set_parent_from_traceparent(
        &span, "garbage"
    ));
    span.in_scope(|| tracing::info!("inside the request"));
    drop(span);
    drop(guard); // flushes the batch processor

    let deadline = Instant::now() + Duration::from_secs(20);
    let export = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = received
            .recv_timeout(left)
            .expect("no OTLP export before the deadline");
        if got.path == "/v1/traces" && !got.body.is_empty() {
            break got;
        }
    };
    assert_eq!(export.content_type, "application/x-protobuf");
    assert!(
        export.body.windows(16).any(|w| w == trace_bytes),
        "the exported spans do not carry the caller's trace id"
    );
    assert!(
        export
            .body
            .windows(b"file-engine".len())
            .any(|w| w == b"file-engine"),
        "service.name is missing"
    );
}
