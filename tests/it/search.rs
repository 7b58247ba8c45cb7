//! `GET /api/search` over a real node and Postgres (PROTOCOL §13): what a token may read and
//! nothing else, a page's `next`, an edit found by its new words, and bad input answered 400 or
//! 403 with a message that says what to fix. The store's own rules (both backends) are in
//! `store_conformance::search_finds_current_text_in_scope_never_deleted`.

use serde_json::{Value, json};

use crate::support::*;

/// `GET /api/search?…` with `token`: the status and the JSON body.
async fn search(node: &TestNode, query: &str, token: &str) -> (u16, Value) {
    let res = http()
        .get(node.http(&format!("/api/search?{query}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("search");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn hits(v: &Value) -> Vec<(String, i64)> {
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {v}"))
        .iter()
        .map(|h| {
            (
                h["room"].as_str().unwrap().to_owned(),
                h["seq"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn search_answers_in_the_tokens_rooms_newest_first_with_pages_and_clear_errors() {
    let db = fresh_db().await;
    let node = TestNode::start(&db, &[]).await;
    for (room, body) in [
        ("eng", "release train leaves friday"),
        ("eng", "the release notes are <b>up</b>"),
        ("ops", "release blocked by a failing check"),
        ("eng", "lunch?"),
    ] {
        rest_post(&node, room, body).await;
    }
    let anyone = token("ann");
    let (status, all) = search(&node, "q=release", &anyone).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        hits(&all),
        vec![("ops".into(), 1), ("eng".into(), 2), ("eng".into(), 1)],
        "newest first"
    );
    let notes = &all["results"][1];
    assert_eq!(notes["body"], "the release notes are <b>up</b>");
    assert_eq!(
        notes["highlight"], "the <mark>release</mark> notes are &lt;b&gt;up&lt;/b&gt;",
        "the highlight is escaped HTML"
    );
    assert!(all.get("next").is_none(), "one page: {all}");

    // A token for `eng` only never sees `ops`, and may not ask for it.
    let eng_only = token_for_rooms("bob", &["eng"]);
    let (_, mine) = search(&node, "q=release", &eng_only).await;
    assert_eq!(hits(&mine), vec![("eng".into(), 2), ("eng".into(), 1)]);
    let (status, refused) = search(&node, "q=release&room=ops", &eng_only).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (403, &json!("forbidden"))
    );
    let (_, one_room) = search(&node, "q=release&room=ops", &anyone).await;
    assert_eq!(hits(&one_room), vec![("ops".into(), 1)]);

    // Pages of one: `next` leads through every hit once.
    let (mut seen, mut before) = (Vec::new(), String::new());
    loop {
        let (status, page) = search(
            &node,
            &format!("q=release&limit=1&before={before}"),
            &anyone,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        seen.extend(hits(&page));
        match page["next"].as_str() {
            Some(next) => before = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, hits(&all), "pages of one, in order, none twice");

    // An edit is found by its new words only.
    let res = http()
        .patch(node.http("/api/rooms/eng/messages/1"))
        .bearer_auth(token("poster"))
        .json(&json!({"body": "the train is postponed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, edited) = search(&node, "q=postponed", &anyone).await;
    assert_eq!(hits(&edited), vec![("eng".into(), 1)]);
    let (_, old) = search(&node, "q=friday", &anyone).await;
    assert_eq!(hits(&old), vec![]);

    // Bad input: each a 400 that names what to fix; operators alone are no error.
    let long = "a".repeat(10 * 1024);
    for (query, says) in [
        ("".to_owned(), "`q` is required"),
        ("q=%20%20".to_owned(), "`q` is required"),
        (format!("q={long}"), "at most 256 characters"),
        (
            "q=x&before=not-a-cursor".to_owned(),
            "`before` must be the `next`",
        ),
    ] {
        let (status, err) = search(&node, &query, &anyone).await;
        assert_eq!(status, 400, "{query:.40}: {err}");
        assert_eq!(err["error"]["code"], "bad_request");
        let message = err["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{query:.40}: {message}");
    }
    let (status, ops) = search(&node, "q=%26%26%20%7C%7C%20!!%20(%22%20-", &anyone).await;
    assert_eq!((status, hits(&ops)), (200, vec![]), "{ops}");
    let (status, err) = search(&node, "q=x&room=bad%20room", &anyone).await;
    assert_eq!(
        (status, &err["error"]["code"]),
        (400, &json!("invalid_room"))
    );
    let (status, _) = search(&node, "q=release", "not-a-token").await;
    assert_eq!(status, 401);
    node.stop().await;
}
