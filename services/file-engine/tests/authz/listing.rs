//! Listings filter before they page: full pages of visible entries, and cursors that are
//! opaque, tamper-proof and never positioned on a hidden name.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;

use super::support::TestApp;
use super::{grant, mkdirs};

/// Pages through `/v1/list{dir}` with `limit`; returns the names of each page and the cursors.
async fn pages(
    app: &TestApp,
    token: &str,
    dir: &str,
    limit: u32,
) -> (Vec<Vec<String>>, Vec<String>) {
    let (mut pages, mut cursors) = (Vec::new(), Vec::new());
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("/v1/list{dir}?limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = app.get_json(token, &url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        let names: Vec<String> = body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        pages.push(names);
        match &body["next_cursor"] {
            Value::String(c) => {
                cursors.push(c.clone());
                cursor = Some(c.clone());
            }
            _ => return (pages, cursors),
        }
        assert!(pages.len() < 20, "paging does not end");
    }
}

#[tokio::test]
async fn paging_with_limit_one_steps_over_a_hidden_entry_without_revealing_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let bob = app.token("bob", "acme", &[]);
    mkdirs(
        &app,
        &admin,
        &[
            "/d/alpha",
            "/d/bravo-secret",
            "/d/charlie",
            "/d/delta",
            "/other/x",
        ],
    )
    .await;
    grant(&app, &admin, "user:bob", "/", &["list"], "allow").await;
    grant(
        &app,
        &admin,
        "user:bob",
        "/d/bravo-secret",
        &["list", "read"],
        "deny",
    )
    .await;

    let (pages1, cursors) = pages(&app, &bob, "/d", 1).await;
    assert_eq!(
        pages1,
        vec![vec!["alpha"], vec!["charlie"], vec!["delta"]],
        "every page is full and the last one ends the listing"
    );
    let (pages2, _) = pages(&app, &bob, "/d", 2).await;
    assert_eq!(pages2, vec![vec!["alpha", "charlie"], vec!["delta"]]);
    // The admin sees everything, in order.
    let (all, _) = pages(&app, &admin, "/d", 3).await;
    assert_eq!(all.concat(), ["alpha", "bravo-secret", "charlie", "delta"]);

    for cursor in &cursors {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        for name in ["alpha", "bravo", "charlie"] {
            assert!(
                !cursor.contains(name) && !text.contains(name),
                "cursor reveals {name}"
            );
        }
    }
    // A cursor is bound to its listing and cannot be altered or forged.
    let first = &cursors[0];
    let mut tampered = first.clone().into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("bravo-secret");
    for (dir, token, cursor) in [
        ("/d", &bob, tampered.as_str()),
        ("/d", &bob, forged.as_str()),
        ("/other", &bob, first.as_str()),
        ("/d", &admin, first.as_str()),
    ] {
        let (status, body) = app
            .get_json(token, &format!("/v1/list{dir}?limit=1&cursor={cursor}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{dir} {cursor}: {body}");
        assert_eq!(body["code"], "bad_request");
    }
}

#[tokio::test]
async fn entries_hidden_by_rules_of_their_own_are_skipped_in_full_pages() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    mkdirs(&app, &admin, &["/d/a", "/d/b", "/d/c", "/d/d", "/d/e"]).await;
    let carol = app.token("carol", "acme", &[]);
    grant(&app, &admin, "user:carol", "/d", &["list"], "allow").await;
    grant(&app, &admin, "user:carol", "/d", &["read"], "deny").await;
    grant(&app, &admin, "user:carol", "/d/b", &["list"], "deny").await;
    grant(&app, &admin, "user:carol", "/d/d", &["list"], "deny").await;
    let (p, _) = pages(&app, &carol, "/d", 1).await;
    assert_eq!(p, vec![vec!["a"], vec!["c"], vec!["e"]]);
}
