//! Test harness: real Postgres (a fresh database per test, cloned from a migrated template of this
//! run; the run drops its own databases when it exits and never touches another run's), real
//! nodes on port 0, real WebSocket and HTTP clients, a TCP fault proxy, and helpers that wait on
//! events with deadlines instead of sleeping.
//!
//! Postgres must be reachable at `TEST_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/test);
//! when it is not, tests fail with a message that says how to start it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// This test run's prefix for every database it creates: `chorus_it_<pid>_<random>`. A run creates
/// and drops only databases with its own prefix, so two runs on one Postgres (CI on a clean clone
/// while a developer runs `cargo test`) never touch each other's.
pub fn run_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        format!(
            "chorus_it_{}_{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        )
    })
}

/// Drops this run's databases when the test process exits (the harness exits through `exit`,
/// also when tests failed, so `atexit` handlers run).
extern "C" fn drop_run_databases() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let Ok((client, conn)) = tokio_postgres::connect(&admin_url(), NoTls).await else {
            return;
        };
        tokio::spawn(conn);
        let pattern = format!("{}\\_%", run_prefix());
        let Ok(rows) = client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY datname DESC",
                &[&pattern],
            )
            .await
        else {
            return;
        };
        // Per-test databases sort after `…_tpl`: they go first, then the template.
        for row in rows {
            let db: String = row.get(0);
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .await;
        }
    });
}

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> std::ffi::c_int;
}

/// Leftovers of earlier runs on this machine that died without their exit handler (SIGKILL):
/// databases named after a process that no longer exists and that nobody is connected to. A
/// live run's databases are never touched (its process exists).
async fn reap_dead_runs(client: &tokio_postgres::Client) {
    let local = matches!(pg_addr().ip().to_string().as_str(), "127.0.0.1" | "::1");
    if !local {
        return;
    }
    let rows = client
        .query(
            "SELECT datname FROM pg_database d WHERE datname LIKE 'chorus\\_it\\_%' \
             AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
            &[],
        )
        .await
        .expect("list test databases");
    for row in rows {
        let db: String = row.get(0);
        let pid = db.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
                .await;
        }
    }
}

/// The migrated template database of this run, made once per test process.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("{}_tpl", run_prefix());
            let client = admin().await;
            reap_dead_runs(&client).await;
            // SAFETY: registering a plain `extern "C" fn` with the C runtime's exit handlers.
            unsafe {
                atexit(drop_run_databases);
            }
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create template");
            chorus::store::migrate::run(&url_with_db(&name))
                .await
                .expect("migrate template");
            name
        })
        .await
}

/// A fresh, migrated database for one test (dropped when the test process exits).
pub async fn fresh_db() -> String {
    let tpl = template().await;
    let name = format!(
        "{}_{}",
        run_prefix(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let _guard = CREATE_LOCK.lock().await;
    admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {tpl}"))
        .await
        .expect("create test database");
    url_with_db(&name)
}

/// An empty database of this run (no schema: a node must migrate it).
pub async fn empty_db() -> String {
    let name = format!(
        "{}_{}",
        run_prefix(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create empty test database");
    url_with_db(&name)
}

/// A direct connection to a test database, for what an operator would do by hand.
pub async fn db_client(db_url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(db_url, NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(conn);
    client
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
/// connection), stall (a blackhole: connections are accepted and stay open, nothing passes either
/// way) and restore.
pub struct FaultProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// Copies `from` → `to` while the proxy is not stalled; while it is, nothing is read (the data
/// waits in the kernel's buffers, as behind a dead route).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = match tokio::time::timeout(Duration::from_millis(50), from.read(&mut buf)).await {
            Err(_) => continue, // look at the stall flag again
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (cut2, stalled2, conns2) = (cut.clone(), stalled.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if cut2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let stalled = stalled2.clone();
                let task = tokio::spawn(async move {
                    // A blackhole accepts, but nothing reaches the server until restored.
                    while stalled.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::select! {
                            () = pump(cr, sw, stalled.clone()) => {}
                            () = pump(sr, cw, stalled) => {}
                        }
                    }
                });
                conns2.lock().expect("conns").push(task);
            }
        });
        FaultProxy {
            addr,
            cut,
            stalled,
            conns,
        }
    }

    /// Refuse new connections and reset the open ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self.conns.lock().expect("conns").drain(..) {
            task.abort();
        }
    }

    /// Blackhole: connections stay open (and new ones are accepted) but nothing passes.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.stalled.store(false, Ordering::SeqCst);
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
