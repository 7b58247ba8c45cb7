//! Test harness: real Postgres (a fresh database per test, cloned from a migrated template), real
//! nodes on port 0, real WebSocket and HTTP clients, a TCP fault proxy, and helpers that wait on
//! events with deadlines instead of sleeping.
//!
//! Postgres must be reachable at `TEST_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/test);
//! when it is not, tests fail with a message that says how to start it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chorus::auth::Auth;
use chorus::config::Settings;
use chorus::node::Node;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, OnceCell};
use tokio_postgres::NoTls;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Message as WsMessage, client::IntoClientRequest};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "integration-test-secret-0123456789";
/// Every wait in the tests is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn url_with_db(db: &str) -> String {
    let base = admin_url();
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL must end in /DBNAME");
    format!("{prefix}/{db}")
}

async fn admin() -> tokio_postgres::Client {
    let url = admin_url();
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach Postgres at {url}: {e}\n\
             Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
             or point TEST_DATABASE_URL at a server (trust auth, a user that may CREATE DATABASE)."
        )
    });
    tokio::spawn(conn);
    client
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static CREATE_LOCK: Mutex<()> = Mutex::const_new(());

/// The migrated template database, made once per test process (named after the migrations' content,
/// so a changed migration makes a new template).
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let mut hash: u64 = 1469598103934665603;
            let mut files: Vec<_> =
                std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                    .expect("migrations folder")
                    .map(|e| e.expect("dir entry").path())
                    .collect();
            files.sort();
            for f in files {
                for b in std::fs::read(&f).expect("migration file") {
                    hash = (hash ^ b as u64).wrapping_mul(1099511628211);
                }
            }
            let name = format!("chorus_tpl_{hash:016x}");
            let client = admin().await;
            client
                .execute("SELECT pg_advisory_lock(4242)", &[])
                .await
                .expect("lock");
            let exists = client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .expect("query pg_database")
                .is_some();
            if !exists {
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create template");
                chorus::store::migrate::run(&url_with_db(&name))
                    .await
                    .expect("migrate template");
            }
            // Leftovers of earlier runs.
            let old = client
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'chorus_it_%'",
                    &[],
                )
                .await
                .expect("list old test databases");
            for row in old {
                let db: String = row.get(0);
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                    .await;
            }
            client
                .execute("SELECT pg_advisory_unlock(4242)", &[])
                .await
                .expect("unlock");
            name
        })
        .await
}

/// A fresh, migrated database for one test.
pub async fn fresh_db() -> String {
    let tpl = template().await;
    let name = format!(
        "chorus_it_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let _guard = CREATE_LOCK.lock().await;
    admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {tpl}"))
        .await
        .expect("create test database");
    url_with_db(&name)
}

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
        let s = settings(db_url, extra);
        chorus::telemetry::init(&s.log, &s.node.id);
        let node = Node::start(settings(db_url, extra))
            .await
            .expect("node starts");
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
    reqwest::Client::new()
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

/// A WebSocket client that reads with deadlines and fails loudly.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
}

impl Ws {
    pub async fn connect(addr: SocketAddr, token: &str) -> Ws {
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        Ws::handshake(addr, token, tcp).await
    }

    /// A client whose socket receive buffer is tiny, so that not reading backs up into the server fast.
    pub async fn connect_small_buffer(addr: SocketAddr, token: &str) -> Ws {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let tcp = socket.connect(addr).await.expect("tcp connect");
        Ws::handshake(addr, token, tcp).await
    }

    /// Upgrades `tcp` with the token as a bearer header; the first frame must be `hello`.
    async fn handshake(addr: SocketAddr, token: &str, tcp: TcpStream) -> Ws {
        let mut req = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let (stream, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp))
            .await
            .expect("ws handshake");
        let mut ws = Ws {
            stream,
            hello: Value::Null,
        };
        ws.hello = ws.recv().await;
        assert_eq!(ws.hello["type"], "hello", "first frame is hello");
        ws
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(WsMessage::text(v.to_string()))
            .await
            .expect("ws send");
    }

    pub async fn send_raw(&mut self, m: WsMessage) {
        self.stream.send(m).await.expect("ws send");
    }

    pub async fn send_frame(&mut self, payload: &[u8], opcode: Data, fin: bool) {
        let frame = Frame::message(payload.to_vec(), OpCode::Data(opcode), fin);
        self.stream
            .send(WsMessage::Frame(frame))
            .await
            .expect("ws send frame");
    }

    /// Next JSON frame (ping/pong skipped); fails on close or after the deadline.
    pub async fn recv(&mut self) -> Value {
        // One deadline for the whole call: server pings must not keep extending it.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("ws error");
            match msg {
                WsMessage::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
                WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Next frame of type `kind`, skipping only presence/typing noise.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
            let t = v["type"].as_str().unwrap_or("");
            assert!(
                matches!(t, "presence" | "presence_diff" | "typing"),
                "expected {kind}, got {v}"
            );
        }
    }

    /// Joins and returns the `joined` frame (and consumes the presence snapshot).
    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type":"join","room":room,"ref":"j"}))
            .await;
        let joined = self.recv_type("joined").await;
        assert_eq!(self.recv().await["type"], "presence");
        joined
    }

    /// Sends a message and returns its ack.
    pub async fn post(&mut self, room: &str, body: &str) -> Value {
        self.send(json!({"type":"send","room":room,"body":body,"ref":"s"}))
            .await;
        // The protocol's order: the ack first, then the sender's own copy of the message
        // (use this helper only where this client is the room's only writer).
        let ack = self.recv_type("ack").await;
        let own = self.recv_type("message").await;
        assert_eq!(
            (&own["seq"], &own["id"]),
            (&ack["seq"], &ack["id"]),
            "own copy follows the ack"
        );
        ack
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("timed out waiting for close");
            match msg {
                Some(Ok(WsMessage::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(WsMessage::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection broke without a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }
}

/// The `seq`s of `n` message frames read from `ws` (anything else but presence noise fails).
pub async fn recv_seqs(ws: &mut Ws, n: usize) -> Vec<i64> {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        let v = ws.recv().await;
        match v["type"].as_str() {
            Some("message") => seqs.push(v["seq"].as_i64().expect("seq")),
            Some("presence") | Some("presence_diff") | Some("ack") | Some("typing") => {}
            _ => panic!("unexpected frame {v}"),
        }
    }
    seqs
}

/// A TCP proxy between a node and a dependency that a test can cut (refuse and reset every
/// connection) and restore.
pub struct FaultProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (cut2, conns2) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if cut2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().expect("conns").push(task);
            }
        });
        FaultProxy { addr, cut, conns }
    }

    /// Refuse new connections and reset the open ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self.conns.lock().expect("conns").drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// The Postgres URL for a database, but through `proxy`.
pub fn via_proxy(db_url: &str, proxy: &FaultProxy) -> String {
    let (_, db) = db_url.rsplit_once('/').expect("db url");
    let cfg: tokio_postgres::Config = admin_url().parse().expect("TEST_DATABASE_URL parses");
    let user = cfg.get_user().unwrap_or("postgres");
    format!("postgres://{user}@{}/{db}", proxy.addr)
}

pub fn pg_addr() -> SocketAddr {
    let cfg: tokio_postgres::Config = admin_url().parse().expect("TEST_DATABASE_URL parses");
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let host = if host == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    format!("{host}:{port}").parse().expect("postgres address")
}
