//! `FE_NATS_URL` with several servers: the client starts while the first listed server is
//! down, and follows the cluster to another node when the one it uses dies.

use std::time::{Duration, Instant};

use testkit::nats_cluster::NatsCluster;

/// A JetStream round trip (`$JS.API.INFO`) through `client` succeeds.
async fn jetstream_answers(client: &async_nats::Client) -> bool {
    let js = async_nats::jetstream::new(client.clone());
    let probe = js.request::<_, _, serde_json::Value>("INFO", &());
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(answer)) if answer.get("error").is_none()
    )
}

#[tokio::test]
async fn the_client_uses_any_listed_server_and_moves_on_when_its_server_dies() {
    let mut cluster = NatsCluster::start().await.unwrap();
    // The first entry is a port nothing listens on: the client must go on to the others.
    let dead = format!("nats://127.0.0.1:{}", testkit::free_port().unwrap());
    let urls = format!("{dead}, {}", cluster.urls());
    let client = platform::nats_client::connect(&urls, "nats-client-test")
        .await
        .unwrap();
    assert!(jetstream_answers(&client).await);

    let first = client.server_info().server_name;
    let index = (0..3).find(|&i| cluster.name(i) == first).unwrap();
    cluster.kill(index).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let moved = client.server_info().server_name != first;
        if moved && jetstream_answers(&client).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client stayed with the dead {first}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_unusable_server_list_is_refused_before_connecting() {
    let err = platform::nats_client::connect("nats://a:1,,nats://b:2", "t")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("entry 2"), "{err}");
}
