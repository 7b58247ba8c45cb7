//! The room log (PROTOCOL §7): edits, deletes, reactions and read cursors, over WebSocket and REST,
//! on one node and across nodes; exact unread counts; the upgrade from the v1 schema.

mod exactness;
mod reads;
mod rules;
mod upgrade;

use serde_json::{Value, json};

use crate::support::*;

/// Sends `frame` with a fresh `ref` and returns the reply carrying it (skipping broadcasts).
pub async fn ask(ws: &mut Ws, mut frame: Value) -> Value {
    let r#ref = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    frame["ref"] = json!(r#ref);
    ws.send(frame).await;
    loop {
        let v = ws.recv().await;
        if v["ref"] == r#ref.as_str() {
            return v;
        }
    }
}

/// The next frame of type `kind`, skipping anything else.
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = ws.recv().await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// A REST call as `user` (`role` optional): status and JSON body.
pub async fn call(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    user: &str,
    role: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let token = auth().issue(user, None, std::time::Duration::from_secs(600), None, role);
    let mut req = http().request(method, node.http(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}
