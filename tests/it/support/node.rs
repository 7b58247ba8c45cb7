//! In-process test nodes, tokens, and the HTTP helpers tests call them with.

use super::*;

/// Settings for a test node: port 0, one worker, the test secret, plus `extra` keys.
pub fn settings(db_url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = HashMap::from([
        ("CHORUS__HTTP__BIND".into(), "127.0.0.1:0".into()),
        ("CHORUS__HTTP__WORKERS".into(), "1".into()),
        ("CHORUS__DATABASE__URL".into(), db_url.into()),
        ("CHORUS__DATABASE__TIMEOUT_MS".into(), "2000".into()),
        ("CHORUS__AUTH__JWT_SECRET".into(), SECRET.into()),
        // fred warns on every connection the cluster tests break on purpose.
        (
            "CHORUS__LOG__LEVEL".into(),
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn,fred=error".into()),
        ),
    ]);
    for (k, v) in extra {
        env.insert(
            format!("CHORUS__{}", k.replace('.', "__").to_uppercase()),
            v.to_string(),
        );
    }
    Settings::load(None, &env, &[]).expect("test settings are valid")
}

pub struct TestNode {
    pub node: Node,
}

impl TestNode {
    pub async fn start(db_url: &str, extra: &[(&str, &str)]) -> TestNode {
        TestNode::start_with(settings(db_url, extra)).await
    }

    /// A node on settings the test built (e.g. with `[[webhooks]]`, which have no env form).
    pub async fn start_with(s: Settings) -> TestNode {
        chorus::telemetry::init(&s.log, &s.node.id);
        let node = Node::start(s).await.expect("node starts");
        TestNode { node }
    }

    pub fn addr(&self) -> SocketAddr {
        self.node.addr
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.node.addr, path)
    }

    pub async fn ws(&self, user: &str) -> Ws {
        Ws::connect(self.addr(), &token(user)).await
    }

    /// Value of a metric line (first sample whose line starts with `prefix`), 0 if absent.
    pub fn metric(&self, prefix: &str) -> f64 {
        self.node
            .shared
            .metrics
            .render()
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn stop(self) {
        self.node.stop().await;
    }
}

pub fn auth() -> Auth {
    Auth::new(SECRET.as_bytes(), &settings("", &[]).auth)
}

/// A token whose `rooms` claim allows only `patterns`.
pub fn token_for_rooms(user: &str, patterns: &[&str]) -> String {
    let rooms = patterns.iter().map(|p| p.to_string()).collect();
    auth().issue(user, None, Duration::from_secs(60), Some(rooms), None)
}

/// Sends a real SIGTERM to a child process.
pub fn sigterm(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
}

pub fn token(user: &str) -> String {
    auth().issue(
        user,
        Some(&format!("Name {user}")),
        Duration::from_secs(3600),
        None,
        None,
    )
}

/// Waits until `cond` holds, polling; fails with `what` after the deadline.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn http() -> reqwest::Client {
    // The node's reqwest (webhooks) brings rustls without a default crypto provider: pick ring,
    // as the node does. Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub async fn readyz(node: &TestNode) -> u16 {
    http()
        .get(node.http("/readyz"))
        .send()
        .await
        .expect("readyz")
        .status()
        .as_u16()
}

/// Waits until `/readyz` answers 200 (`true`) or 503 (`false`).
pub async fn wait_ready(node: &TestNode, ready: bool) {
    let want = if ready { 200 } else { 503 };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while readyz(node).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET path` as `user`; expects JSON back.
pub async fn get_json(node: &TestNode, path: &str, user: &str) -> Value {
    http()
        .get(node.http(path))
        .bearer_auth(token(user))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// Posts `body` to `room` over REST as user "poster"; expects 201 and returns the message JSON.
pub async fn rest_post(node: &TestNode, room: &str, body: &str) -> Value {
    let res = http()
        .post(node.http(&format!("/api/rooms/{room}/messages")))
        .bearer_auth(token("poster"))
        .json(&json!({"body": body}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 201);
    res.json().await.expect("json")
}

/// Waits for a child process to exit (bounded by the deadline) and returns its status.
pub async fn exit_status(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "process did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
