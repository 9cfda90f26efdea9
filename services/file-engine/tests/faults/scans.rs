//! clamd killed while scans are in flight: while it is down no upload is released (each stays
//! `scanning`, downloads answer 409), and after it is back every upload is scanned: clean ones
//! become available with their bytes, the infected one is quarantined and never served.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;

use super::rig::{Rig, RigSpec};
use super::tally::Tally;
use super::Form;

/// The EICAR test string (68 bytes): the test signature of the test kit's clamd.
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

pub async fn clamd_kill(form: Form) {
    let files = if form == Form::Full { 40 } else { 8 };
    let mut rig = Rig::start(RigSpec {
        clamd: true,
        ..RigSpec::default()
    })
    .await;
    let token = rig.admin("acme");
    let mut sent = 0;
    let mut acked: HashMap<String, (String, Vec<u8>)> = HashMap::new();

    // In flight when clamd dies: uploads sent just before the kill.
    let body = |i: usize| format!("scan fault file {i}\n").into_bytes().repeat(2000);
    let in_flight: Vec<(String, Vec<u8>)> = (0..files)
        .map(|i| (format!("/scan/before/{i}.txt"), body(i)))
        .collect();
    for (path, id) in upload_all(&rig, &token, &in_flight).await {
        acked.insert(
            id,
            (
                path.clone(),
                in_flight
                    .iter()
                    .find(|(p, _)| *p == path)
                    .unwrap()
                    .1
                    .clone(),
            ),
        );
    }
    sent += in_flight.len();
    rig.clamd.as_mut().expect("clamd").stop().await;

    // Sent while clamd is down, plus one infected file.
    let mut while_down: Vec<(String, Vec<u8>)> = (0..files)
        .map(|i| (format!("/scan/during/{i}.txt"), body(1000 + i)))
        .collect();
    while_down.push(("/scan/during/eicar.txt".into(), EICAR.to_vec()));
    let down_ids = upload_all(&rig, &token, &while_down).await;
    sent += while_down.len();
    assert_eq!(
        down_ids.len(),
        while_down.len(),
        "uploads are accepted while clamd is down"
    );
    for (path, id) in &down_ids {
        let bytes = while_down
            .iter()
            .find(|(p, _)| p == path)
            .unwrap()
            .1
            .clone();
        acked.insert(id.clone(), (path.clone(), bytes));
    }

    // Observe the outage for a few scanner retries: nothing sent during it is released.
    let observe_until = Instant::now() + Duration::from_secs(4);
    let mut looks = 0;
    while Instant::now() < observe_until {
        for (path, _) in &down_ids {
            let (status, stat) = rig.get_json(&token, &format!("/v1/stat{path}")).await;
            if status == StatusCode::OK {
                assert_eq!(
                    stat["status"], "scanning",
                    "{path} released while clamd is down: {stat}"
                );
            }
            let download = rig
                .http
                .get(rig.url(&format!("/v1/files{path}")))
                .bearer_auth(&token)
                .send()
                .await
                .expect("download");
            assert_ne!(
                download.status(),
                StatusCode::OK,
                "{path} served while clamd is down"
            );
        }
        looks += 1;
    }
    assert!(looks >= 2, "the outage was not observed");

    rig.clamd
        .as_mut()
        .expect("clamd")
        .restart()
        .await
        .expect("clamd restart");
    let ids: Vec<String> = acked.keys().cloned().collect();
    let finals = rig.wait_all(&token, &ids, form.patience()).await;
    let log = rig.read_log().await;
    let mut tally = Tally::judge(sent, &finals, &log);
    for (id, (path, bytes)) in &acked {
        let task = &finals[id];
        let download = rig
            .http
            .get(rig.url(&format!("/v1/files{path}")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("download");
        let status = download.status();
        let served = download.bytes().await.unwrap_or_default();
        let ok = if bytes.as_slice() == EICAR {
            task["status"] == "failed"
                && task["error"]["code"] == "malware_detected"
                && status == StatusCode::CONFLICT
        } else {
            task["status"] == "succeeded"
                && status == StatusCode::OK
                && served.as_ref() == bytes.as_slice()
        };
        if !ok {
            eprintln!("lost: {path}: task {task}, download {status}");
            tally.lost += 1;
        }
    }
    tally.report("clamd_kill");
}

/// Uploads concurrently; (path, task id) of those acknowledged.
async fn upload_all(rig: &Rig, token: &str, files: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    futures::stream::iter(files.iter().cloned())
        .map(|(path, bytes)| async move {
            let id = rig.upload(token, &path, bytes).await;
            id.map(|id| (path, id))
        })
        .buffer_unordered(4)
        .filter_map(|x| async move { x })
        .collect()
        .await
}
