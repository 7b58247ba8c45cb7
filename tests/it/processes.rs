//! Processes the tests start and stop themselves: a private `redis-server` per test (on a free
//! port, killed and restarted at will, stopped on drop) and the real `chorus` binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{DEADLINE, SECRET};

/// A `redis-server` of this test's own. Nothing is saved to disk; a restart starts empty.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Extra `redis-server` arguments (e.g. `--requirepass`), kept for restarts.
    args: Vec<String>,
    password: Option<String>,
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        RedisServer::start_on(free_port(), None).await
    }

    /// Starts on `port` (which a node may already be trying to reach), requiring `password`.
    pub async fn start_on(port: u16, password: Option<&str>) -> RedisServer {
        RedisServer::start_with(port, password, Vec::new()).await
    }

    /// Starts with extra `redis-server` arguments (TLS ports, ACL users, …); `port` stays a plain
    /// port, which the harness itself uses.
    pub async fn start_with(port: u16, password: Option<&str>, extra: Vec<String>) -> RedisServer {
        let mut args = extra;
        if let Some(p) = password {
            args.extend(["--requirepass".to_owned(), p.to_owned()]);
        }
        let mut server = RedisServer {
            port,
            child: None,
            args,
            password: password.map(str::to_owned),
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the server (again, on the same port) and waits until it answers PING.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): the cluster tests start their own. Install it \
                     with `apt-get install redis-server` (.ci/run does)."
                )
            });
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if self
                .try_command(&["PING"])
                .await
                .is_ok_and(|r| r == "+PONG")
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {} did not answer PING",
                self.port
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server at once (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: connections stay open but nothing is
    /// answered, the way a stalled host or a long GC pause looks to a client.
    pub fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let ok = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill {sig} failed");
    }

    /// Sends one command and returns the first line of the reply (e.g. `+OK`, `:1`).
    pub async fn command(&self, args: &[&str]) -> String {
        self.try_command(args).await.expect("redis command")
    }

    async fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(self.addr()).await?;
        let mut req = String::new();
        if let Some(p) = &self.password {
            req.push_str(&format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{p}\r\n", p.len()));
        }
        req.push_str(&format!("*{}\r\n", args.len()));
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(req.as_bytes()).await?;
        let mut reader = tokio::io::BufReader::new(stream);
        let mut line = String::new();
        if self.password.is_some() {
            reader.read_line(&mut line).await?; // +OK to AUTH
            line.clear();
        }
        reader.read_line(&mut line).await?;
        Ok(line.trim_end().to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `chorus migrate` with only `CHORUS__DATABASE__URL=url` (a migration job holds no other secret).
pub fn chorus_migrate(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("migrate")
        .env_clear()
        .env("CHORUS__DATABASE__URL", url)
        .output()
        .expect("run chorus migrate")
}

/// Runs the real binary (`chorus serve` on a free port) with the test secret, Postgres at
/// `db_url`, and `extra` environment; returns the child and the address it logged.
pub fn spawn_node(db_url: &str, extra: &[(&str, &str)]) -> (Child, String) {
    let (child, addr, _) = spawn_node_logged(db_url, extra);
    (child, addr)
}

/// Every line a node printed so far (stdout and stderr).
pub type Log = Arc<Mutex<Vec<String>>>;

/// As [`spawn_node`], and keeps every line the node prints.
pub fn spawn_node_logged(db_url: &str, extra: &[(&str, &str)]) -> (Child, String, Log) {
    let (child, log) = spawn_logged(db_url, extra);
    let addr = logged_addr(&log);
    (child, addr, log)
}

/// The address a starting node logs (`listening addr=...`), waited for.
fn logged_addr(log: &Log) -> String {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let addr = log.lock().expect("log").iter().find_map(|line| {
            let rest = line.split("listening addr=").nth(1)?;
            Some(rest.split_whitespace().next().unwrap_or("").to_owned())
        });
        if let Some(addr) = addr {
            return addr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node logs its address"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// As [`spawn_node`], with more command-line arguments (e.g. `--config-dir`).
pub fn spawn_node_args(db_url: &str, extra: &[(&str, &str)], args: &[&str]) -> (Child, String) {
    let (child, addr, _) = spawn_node_args_logged(db_url, extra, args);
    (child, addr)
}

/// [`spawn_node_args`], with what the node prints.
pub fn spawn_node_args_logged(
    db_url: &str,
    extra: &[(&str, &str)],
    args: &[&str],
) -> (Child, String, Log) {
    let (child, log) = spawn_logged_args(db_url, extra, args);
    let addr = logged_addr(&log);
    (child, addr, log)
}

/// The lines of `log` that contain every one of `parts`.
pub fn lines_with(log: &Log, parts: &[&str]) -> Vec<String> {
    let lines = log.lock().expect("log");
    lines
        .iter()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .cloned()
        .collect()
}

/// Kills a node at once (SIGKILL: no drain, nothing given back) and reaps it.
pub fn sigkill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `chorus serve` and collects its output lines without waiting for anything.
pub fn spawn_logged(db_url: &str, extra: &[(&str, &str)]) -> (Child, Log) {
    spawn_logged_args(db_url, extra, &[])
}

fn spawn_logged_args(db_url: &str, extra: &[(&str, &str)], args: &[&str]) -> (Child, Log) {
    spawn_bin(env!("CARGO_BIN_EXE_chorus"), db_url, extra, args)
}

/// A node of the previous release (`tests/upgrade/run` builds it and names it in
/// `CHORUS_PREVIOUS_BIN`), with its own configuration folder (`CHORUS_PREVIOUS_CONFIG`: its
/// defaults, not this release's, as its image would ship them); returns it and its address.
pub fn spawn_previous(db_url: &str, extra: &[(&str, &str)]) -> (Child, String, Log) {
    let need = |key: &str| {
        std::env::var(key).unwrap_or_else(|_| {
            panic!("{key} is not set: run tests/upgrade/run, which builds the previous release and runs this test")
        })
    };
    let (bin, config) = (need("CHORUS_PREVIOUS_BIN"), need("CHORUS_PREVIOUS_CONFIG"));
    let (child, log) = spawn_bin(&bin, db_url, extra, &["--config-dir", &config]);
    let addr = logged_addr(&log);
    (child, addr, log)
}

fn spawn_bin(bin: &str, db_url: &str, extra: &[(&str, &str)], args: &[&str]) -> (Child, Log) {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("CHORUS__DATABASE__URL", db_url)
        .env("CHORUS__AUTH__JWT_SECRET", SECRET)
        .env("CHORUS__HTTP__WORKERS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn chorus");
    let log: Log = Arc::default();
    let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("stdout"));
    let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("stderr"));
    for stream in [out, err] {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                log.lock().expect("log").push(line);
            }
        });
    }
    (child, log)
}

/// Waits until a line of `log` satisfies `pred` (bounded by the deadline) and returns it.
pub async fn wait_for_line(log: &Log, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(line) = log.lock().expect("log").iter().find(|l| pred(l)) {
            return line.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line {what}; the node printed:\n{}",
            log.lock().expect("log").join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A private Redis Cluster: 3 masters and a replica each (`redis-server --cluster-enabled yes`,
/// joined by `redis-cli --cluster create`), with a 1 s node timeout so a killed master fails over
/// within a few seconds. Its config files live in a temporary directory, removed on drop.
pub struct RedisCluster {
    pub servers: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("chorus-it-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir for the cluster's config files");
        let mut servers = Vec::new();
        for _ in 0..6 {
            let port = free_port();
            let conf = dir.join(format!("nodes-{port}.conf"));
            // `--dir`: a replica writes the RDB of its full sync to disk; never into the repo.
            let extra = [
                "--dir",
                dir.to_str().expect("utf-8 temp path"),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().expect("utf-8 temp path"),
                "--cluster-node-timeout",
                "1000",
                // A replica fails over however long since it last heard its master (a loaded
                // test machine must not turn a kill into a stuck shard).
                "--cluster-replica-validity-factor",
                "0",
            ];
            let extra = extra.iter().map(|s| s.to_string()).collect();
            servers.push(RedisServer::start_with(port, None, extra).await);
        }
        let cluster = RedisCluster { servers, dir };
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(
            cluster
                .servers
                .iter()
                .map(|s| format!("127.0.0.1:{}", s.port)),
        );
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let out = Command::new("redis-cli")
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}): install it with `apt-get install redis-tools`")
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_healthy(None).await;
        cluster
    }

    /// Seed URLs of every node (a node needs only one; several show the config form).
    pub fn url(&self) -> String {
        self.servers
            .iter()
            .take(2)
            .map(|s| s.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `redis-cli -p port args…`, its output.
    pub fn cli(port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive_ports(&self) -> Vec<u16> {
        self.servers
            .iter()
            .filter(|s| s.running())
            .map(|s| s.port)
            .collect()
    }

    /// The port of the master that owns `key`'s slot, as a live node sees it (`None` while the
    /// slot has no live master).
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let ask = *self.alive_ports().first()?;
        let slot: u16 = Self::cli(ask, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .ok()?;
        Self::cli(ask, &["cluster", "nodes"])
            .lines()
            .find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let flags = f.get(2)?;
                if !flags.contains("master") || flags.contains("fail") {
                    return None;
                }
                let owns = f[8..].iter().any(|range| {
                    let mut ends = range.split('-').map(|n| n.parse::<u16>());
                    match (ends.next(), ends.next()) {
                        (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
                        (Some(Ok(a)), None) => a == slot,
                        _ => false,
                    }
                });
                let port = f[1].split(['@', ':']).nth(1)?.parse().ok()?;
                owns.then_some(port)
            })
    }

    /// Waits until every live node says `cluster_state:ok`, every replica's link to its master is
    /// up, and (with `key`) `key`'s slot has a live master.
    pub async fn wait_healthy(&self, key: Option<&str>) {
        let deadline = tokio::time::Instant::now() + DEADLINE * 3;
        loop {
            let alive = self.alive_ports();
            let ok = alive.iter().all(|&p| {
                let info = Self::cli(p, &["cluster", "info"]);
                let repl = Self::cli(p, &["info", "replication"]);
                info.contains("cluster_state:ok")
                    && (!repl.contains("role:slave") || repl.contains("master_link_status:up"))
            }) && key
                .is_none_or(|k| self.master_of(k).is_some_and(|port| alive.contains(&port)));
            if ok {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Redis Cluster did not become healthy"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// `CLUSTER NODES` as a live node sees it (for failure messages).
    pub fn nodes(&self) -> String {
        self.alive_ports()
            .first()
            .map(|&p| Self::cli(p, &["cluster", "nodes"]))
            .unwrap_or_default()
    }

    /// Kills (SIGKILL) the master that owns `key`'s slot; returns its port.
    pub fn kill_master_of(&mut self, key: &str) -> u16 {
        let port = self.master_of(key).expect("the key's slot has a master");
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("the master is one of ours")
            .kill();
        port
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
