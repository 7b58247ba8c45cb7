//! The demo page, the browser client and the standalone-only demo login. The login test runs a
//! standalone node (in-memory store, generated secret), since that mode is what it is about.

use serde_json::{Value, json};

use crate::support::*;

#[actix_web::test]
async fn the_demo_page_and_client_are_served() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let page = http().get(node.http("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.headers().contains_key("content-security-policy"));
    assert!(page.text().await.unwrap().contains(r#"from "/chorus.js""#));
    let js = http().get(node.http("/chorus.js")).send().await.unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    // The SDK's checked-in bundle, byte for byte (CI checks that it is built from the current source).
    let bundle = std::fs::read_to_string("clients/js/dist/chorus.js").unwrap();
    assert_eq!(js.text().await.unwrap(), bundle);
    assert!(bundle.contains("var Chorus = class"));
    // With a configured secret there is no demo login.
    let res = http()
        .post(node.http("/api/demo/login"))
        .json(&json!({"name":"x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("auth.jwt_secret"), "says why: {message}");
    node.stop().await;
}

#[actix_web::test]
async fn standalone_demo_login_issues_a_working_token() {
    let env = std::collections::HashMap::from([
        ("CHORUS__HTTP__BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("CHORUS__HTTP__WORKERS".to_owned(), "1".to_owned()),
    ]);
    let settings = chorus::config::Settings::load(None, &env, &[]).unwrap();
    assert!(settings.standalone() && settings.auth.jwt_secret.is_empty());
    let node = chorus::node::Node::start(settings).await.unwrap();
    let url = format!("http://{}/api/demo/login", node.addr);
    let res = http()
        .post(&url)
        .json(&json!({"name":"  Ann  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"], "Ann");
    let mut ws = Ws::connect(node.addr, body["token"].as_str().unwrap()).await;
    assert_eq!(ws.hello["user"], "Ann");
    ws.join("lobby").await;
    assert_eq!(ws.post("lobby", "hi").await["seq"], 1);
    for bad in [
        json!({"name":""}),
        json!({"name":"x".repeat(65)}),
        json!({"nom":"x"}),
    ] {
        let res = http().post(&url).json(&bad).send().await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }
    node.stop().await;
}

#[actix_web::test]
async fn other_sites_may_load_the_client_and_call_the_api_within_allowed_origins() {
    let preflight = |node: &TestNode, origin: &str| {
        http()
            .request(reqwest::Method::OPTIONS, node.http("/api/rooms/x/messages"))
            .header("origin", origin.to_owned())
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )
            .send()
    };
    // No allow-list: any origin, without credentials.
    let open = TestNode::start(&fresh_db().await, &[]).await;
    let res = preflight(&open, "https://app.example").await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let js = http()
        .get(open.http("/chorus.js"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(js.headers()["access-control-allow-origin"], "*");
    open.stop().await;

    // With auth.allowed_origins: only those.
    let strict = TestNode::start(
        &fresh_db().await,
        &[("auth.allowed_origins", "https://chat.example")],
    )
    .await;
    let res = preflight(&strict, "https://chat.example").await.unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://chat.example"
    );
    let res = preflight(&strict, "https://evil.example").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = http()
        .get(strict.http("/api/rooms/x/messages"))
        .bearer_auth(token("u"))
        .header("origin", "https://chat.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://chat.example"
    );
    strict.stop().await;
}
