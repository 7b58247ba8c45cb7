//! TLS to managed services (PROTOCOL §9): Postgres with `sslmode`/`sslrootcert` against the
//! machine's own Postgres (ssl on, with a server certificate from a test CA this harness makes),
//! and Redis over `rediss://` against a redis-server of the test's own with TLS and an ACL user.
//! Each failure (wrong CA, wrong host name, wrong password) must say so, naming the host.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::sync::OnceCell;

use crate::processes::{RedisServer, chorus_migrate, free_port, spawn_logged, wait_for_line};
use crate::support::*;
use crate::support::{prefix, writer_on_a_member_on_b};

/// A test certificate authority, and files of a server certificate it signed.
struct TestCa {
    ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        TestCa {
            ca_pem: issuer.pem(),
            issuer,
        }
    }

    /// A server certificate for `names` (DNS names), as (certificate PEM, key PEM).
    fn server(&self, names: &[&str]) -> (String, String) {
        self.server_valid(names, None)
    }

    /// The same, valid from `valid.0` to `valid.1` days from now (rcgen's default without).
    fn server_valid(&self, names: &[&str], valid: Option<(i64, i64)>) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        if let Some((from, to)) = valid {
            let day = |d: i64| {
                let t = chrono::Utc::now() + chrono::Duration::days(d);
                use chrono::Datelike;
                rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
            };
            params.not_before = day(from);
            params.not_after = day(to);
        }
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// The CA whose certificate the machine's Postgres serves (for `localhost` only), made and
/// installed once per machine: the files live in the data directory's `chorus-test-tls/`, and
/// `ssl_cert_file`/`ssl_key_file` point at them (ALTER SYSTEM, then a reload: no restart).
async fn postgres_ca() -> &'static Path {
    static CA: OnceCell<PathBuf> = OnceCell::const_new();
    CA.get_or_init(|| async {
        let admin = db_client(&admin_url()).await;
        let show = |row: tokio_postgres::Row| -> String { row.get(0) };
        let data = show(
            admin
                .query_one("SHOW data_directory", &[])
                .await
                .expect("data_directory"),
        );
        let dir = Path::new(&data).join("chorus-test-tls");
        let (ca, cert, key) = (
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        );
        admin
            .execute("SELECT pg_advisory_lock(4243)", &[])
            .await
            .expect("lock");
        let current = show(
            admin
                .query_one("SHOW ssl_cert_file", &[])
                .await
                .expect("ssl"),
        );
        let on = show(admin.query_one("SHOW ssl", &[]).await.expect("ssl"));
        if !(on == "on" && Path::new(&current) == cert && ca.is_file() && key.is_file()) {
            let owner = std::fs::metadata(&data).unwrap_or_else(|e| {
                panic!(
                    "the TLS tests configure the local Postgres (ssl on, a test certificate in its \
                     data directory {data}); they need to run on its machine as root: {e}"
                )
            });
            let authority = TestCa::new("Chorus test Postgres CA");
            let (server_pem, key_pem) = authority.server(&["localhost"]);
            std::fs::create_dir_all(&dir).expect("create the certificate folder");
            std::fs::write(&ca, &authority.ca_pem).expect("write ca.pem");
            std::fs::write(&cert, server_pem).expect("write server.pem");
            std::fs::write(&key, key_pem).expect("write server.key");
            for path in [&dir, &ca, &cert, &key] {
                std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))
                    .expect("give the certificate files to the Postgres user");
            }
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            // One statement at a time: ALTER SYSTEM may not run in a (multi-statement) transaction.
            for statement in [
                format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
                format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
                "ALTER SYSTEM SET ssl = on".to_owned(),
                "SELECT pg_reload_conf()".to_owned(),
            ] {
                admin.batch_execute(&statement).await.expect("turn ssl on");
            }
        }
        admin
            .execute("SELECT pg_advisory_unlock(4243)", &[])
            .await
            .expect("unlock");
        ca
    })
    .await
}

/// The test database's URL with `host` instead of the admin URL's host, plus `query`.
fn tls_url(db_url: &str, host: &str, query: &str) -> String {
    let (_, db) = db_url.rsplit_once('/').expect("db url");
    let port = pg_addr().port();
    format!("postgres://postgres@{host}:{port}/{db}?{query}")
}

/// Whether the connection a URL gives is encrypted, as the server sees it.
async fn encrypted(url: &str) -> Result<bool, String> {
    let (client, _conn) = chorus::store::postgres::connect::connect(url).await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[actix_web::test]
async fn postgres_over_tls_with_require_and_verify_full_for_writer_reader_and_migrate() {
    let ca = postgres_ca().await.display().to_string();
    let db = fresh_db().await;
    // The loop waits for the reload that turned ssl on to reach new sessions.
    let require = tls_url(&db, "localhost", "sslmode=require");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while encrypted(&require).await != Ok(true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Postgres never offered TLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let full = tls_url(
        &db,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert_eq!(encrypted(&full).await, Ok(true));
    assert_eq!(
        encrypted(&tls_url(&db, "localhost", "sslmode=disable")).await,
        Ok(false)
    );

    // A node on TLS for both pools: it posts (writer) and pages history (reader).
    let node = TestNode::start(&full, &[("database.read_url", full.as_str())]).await;
    wait_ready(&node, true).await;
    rest_post(&node, "tls", "over TLS").await;
    let page = get_json(&node, "/api/rooms/tls/messages?before=100", "reader").await;
    assert_eq!(page["messages"][0]["body"], "over TLS");
    node.stop().await;

    // chorus migrate on an empty database, over verify-full.
    let empty = empty_db().await;
    let out = chorus_migrate(&tls_url(
        &empty,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[actix_web::test]
async fn postgres_with_a_wrong_ca_or_a_wrong_host_name_fails_with_a_clear_error() {
    let ca = postgres_ca().await.display().to_string();
    let db = fresh_db().await;
    let other = std::env::temp_dir().join(format!("chorus-other-ca-{}.pem", std::process::id()));
    std::fs::write(&other, TestCa::new("Somebody else's CA").ca_pem).unwrap();
    let port = pg_addr().port();

    let wrong_ca = chorus_migrate(&tls_url(
        &db,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    ));
    let err = String::from_utf8_lossy(&wrong_ca.stderr);
    assert!(!wrong_ca.status.success());
    assert!(
        err.contains(": TLS: ") && err.contains(&format!("localhost:{port}")),
        "the error names TLS and the host: {err}"
    );

    // The certificate is for `localhost`: by address, verify-full refuses and verify-ca accepts.
    let by_ip = chorus_migrate(&tls_url(
        &db,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    let err = String::from_utf8_lossy(&by_ip.stderr);
    assert!(!by_ip.status.success());
    assert!(
        err.contains(": TLS: ") && err.contains(&format!("127.0.0.1:{port}")),
        "the error names TLS and the host: {err}"
    );
    let chain_only = tls_url(
        &db,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    );
    assert_eq!(encrypted(&chain_only).await, Ok(true));
    let _ = std::fs::remove_file(other);
}

/// A redis-server with a plain port (for the harness) and a TLS port, a password for the
/// default user and an ACL user `chorus`.
struct TlsRedis {
    _server: RedisServer,
    tls_port: u16,
    ca: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn tls_redis() -> TlsRedis {
    let dir = std::env::temp_dir().join(format!(
        "chorus-redis-tls-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let authority = TestCa::new("Chorus test Redis CA");
    let (cert, key) = authority.server(&["localhost"]);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &authority.ca_pem).unwrap();
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    let tls_port = free_port();
    let path = |f: &str| dir.join(f).display().to_string();
    let args = vec![
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        path("server.pem"),
        "--tls-key-file".into(),
        path("server.key"),
        "--tls-ca-cert-file".into(),
        path("ca.pem"),
        "--tls-auth-clients".into(),
        "no".into(),
        "--user".into(),
        "chorus".into(),
        "on".into(),
        ">acl-pw-2718".into(),
        "~*".into(),
        "&*".into(),
        "+@all".into(),
    ];
    let server = RedisServer::start_with(free_port(), Some("default-pw"), args).await;
    TlsRedis {
        _server: server,
        tls_port,
        ca,
        _dir: TempDir(dir),
    }
}

#[actix_web::test]
async fn redis_over_tls_with_an_acl_user_carries_the_cluster() {
    let redis = tls_redis().await;
    let db = fresh_db().await;
    let url = format!("rediss://chorus:acl-pw-2718@localhost:{}", redis.tls_port);
    let prefix = prefix();
    let ca = redis.ca.display().to_string();
    let a = cluster_node_with(&db, &url, &prefix, &ca).await;
    let b = cluster_node_with(&db, &url, &prefix, &ca).await;
    writer_on_a_member_on_b(&a, &b, "secure").await;
    a.stop().await;
    b.stop().await;
}

/// A ready cluster node on Redis at `url`, trusting `ca`.
async fn cluster_node_with(db: &str, url: &str, prefix: &str, ca: &str) -> TestNode {
    let node = TestNode::start(
        db,
        &[
            ("redis.url", url),
            ("redis.prefix", prefix),
            ("redis.ca_file", ca),
            ("cluster.heartbeat_ms", "200"),
            ("cluster.dead_after_ms", "1200"),
        ],
    )
    .await;
    wait_ready(&node, true).await;
    node
}

#[actix_web::test]
async fn redis_with_a_wrong_password_a_wrong_ca_or_an_unknown_host_is_logged_as_such() {
    let redis = tls_redis().await;
    let db = fresh_db().await;
    let host = format!("localhost:{}", redis.tls_port);
    let ca = redis.ca.display().to_string();
    let other = redis.ca.with_file_name("other-ca.pem");
    std::fs::write(&other, TestCa::new("Somebody else's CA").ca_pem).unwrap();
    let other = other.display().to_string();
    let unknown = "no-such-host.invalid:6379".to_owned();
    for (url, ca_file, host, cause) in [
        (
            format!("rediss://chorus:not-it@{host}"),
            ca.as_str(),
            &host,
            "authentication",
        ),
        (
            format!("rediss://chorus:acl-pw-2718@{host}"),
            other.as_str(),
            &host,
            "TLS",
        ),
        (format!("redis://:not-it@{unknown}"), "", &unknown, "DNS"),
    ] {
        let (mut child, log) = spawn_logged(
            &db,
            &[
                ("CHORUS__REDIS__URL", url.as_str()),
                ("CHORUS__REDIS__CA_FILE", ca_file),
                ("CHORUS__LOG__LEVEL", "info"),
            ],
        );
        wait_for_line(&log, &format!("naming {host} and `{cause}`"), |l| {
            l.contains("redis unreachable") && l.contains(host.as_str()) && l.contains(cause)
        })
        .await;
        let _ = child.kill();
        let _ = child.wait();
        let lines = log.lock().unwrap().join("\n");
        assert!(
            !lines.contains("not-it") && !lines.contains("acl-pw-2718"),
            "{lines}"
        );
    }
}

/// A WebSocket over TLS to `addr` as `localhost`, trusting only the CA in `ca`; the first frame.
async fn wss(port: u16, ca: &Path, user: &str) -> Result<(WsStream, serde_json::Value), String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://localhost:{port}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(user)).parse().unwrap(),
    );
    let config = chorus::tls::client_config(chorus::tls::Verify::Full, Some(ca))?;
    let connector = tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(config));
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(connector))
            .await
            .map_err(|e| e.to_string())?;
    let hello = match tokio::time::timeout(DEADLINE, ws.next()).await {
        Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
            serde_json::from_str(&t).map_err(|e| e.to_string())?
        }
        other => return Err(format!("no hello: {other:?}")),
    };
    Ok((ws, hello))
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[actix_web::test]
async fn the_node_serves_wss_itself_and_a_sighup_swaps_the_certificate_without_dropping_sessions() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = TempDir(std::env::temp_dir().join(format!(
        "chorus-https-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (first, second) = (TestCa::new("First CA"), TestCa::new("Second CA"));
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let install = |ca: &TestCa| {
        let (c, k) = ca.server(&["localhost"]);
        std::fs::write(&cert, c).unwrap();
        std::fs::write(&key, k).unwrap();
    };
    let (ca1, ca2) = (dir.0.join("ca1.pem"), dir.0.join("ca2.pem"));
    std::fs::write(&ca1, &first.ca_pem).unwrap();
    std::fs::write(&ca2, &second.ca_pem).unwrap();
    install(&first);

    let db = fresh_db().await;
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let (mut child, addr, log) = crate::processes::spawn_node_logged(
        &db,
        &[
            ("CHORUS__HTTP__TLS_CERT", cert_s.as_str()),
            ("CHORUS__HTTP__TLS_KEY", key_s.as_str()),
        ],
    );
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let (mut old, hello) = wss(port, &ca1, "early")
        .await
        .expect("wss with the first CA");
    assert_eq!(hello["type"], "hello");

    install(&second);
    sigterm_like(&child, "-HUP");
    wait_for_line(&log, "saying the certificate was reloaded", |l| {
        l.contains("TLS certificate reloaded")
    })
    .await;
    let (_new, hello) = wss(port, &ca2, "late")
        .await
        .expect("wss with the second CA");
    assert_eq!(hello["type"], "hello");
    assert!(
        wss(port, &ca1, "stale").await.is_err(),
        "the old certificate is gone"
    );
    // The session from before the reload is still open and answering.
    old.send(Message::text(r#"{"type":"ping","ref":"still"}"#))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(DEADLINE, old.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("pong") => {
                assert!(t.contains("still"));
                break;
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("the old session did not answer: {other:?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `sig` (e.g. `-HUP`) to a child process.
fn sigterm_like(child: &std::process::Child, sig: &str) {
    let sent = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill {sig} failed");
}

/// The serial of the certificate in `pem`, as the node logs it.
fn serial_of(pem: &str) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate");
    chorus::tls::server::Leaf::of(&der).expect("parses").serial
}

#[actix_web::test]
async fn an_expired_or_not_yet_valid_certificate_is_refused_at_start_by_check_config_and_on_sighup()
{
    use std::process::Command;
    let dir = TempDir(std::env::temp_dir().join(format!(
        "chorus-expiry-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let ca = TestCa::new("Expiry CA");
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let install = |valid: (i64, i64)| {
        let (c, k) = ca.server_valid(&["localhost"], Some(valid));
        std::fs::write(&cert, &c).unwrap();
        std::fs::write(&key, k).unwrap();
        serial_of(&c)
    };
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let tls_env = [
        ("CHORUS__HTTP__TLS_CERT", cert_s.as_str()),
        ("CHORUS__HTTP__TLS_KEY", key_s.as_str()),
    ];

    // Expired (a year ago) or not valid yet (from tomorrow): check-config fails naming why.
    for (valid, why) in [((-400, -1), "expired"), ((2, 30), "not valid before")] {
        install(valid);
        let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .arg("check-config")
            .env_clear()
            .envs(tls_env)
            .output()
            .expect("run check-config");
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "check-config accepted a certificate that is {why}"
        );
        assert!(
            text.contains("http.tls_cert") && text.contains(why),
            "{text}"
        );
    }
    // And serve refuses to start on one.
    install((-400, -1));
    let (mut refused, refused_log) = crate::processes::spawn_logged(&fresh_db().await, &tls_env);
    let status = crate::support::exit_status(&mut refused).await;
    assert!(!status.success(), "serve started on an expired certificate");
    wait_for_line(&refused_log, "saying it expired", |l| l.contains("expired")).await;

    // Valid, but for 5 more days: served, with a warning naming its serial.
    let soon = install((-1, 5));
    let db = fresh_db().await;
    let (mut child, addr, log) = crate::processes::spawn_node_logged(&db, &tls_env);
    wait_for_line(&log, "warning that it expires soon", |l| {
        l.contains("WARN") && l.contains("http.tls_warn_days") && l.contains(&soon)
    })
    .await;
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    wss(port, &ca_file, "early").await.expect("served");

    // SIGHUP onto an expired one: refused, and the one in use stays.
    install((-400, -1));
    sigterm_like(&child, "-HUP");
    wait_for_line(&log, "refusing the expired certificate", |l| {
        l.contains("NOT reloaded") && l.contains("expired")
    })
    .await;
    wss(port, &ca_file, "still")
        .await
        .expect("the previous certificate is still served");

    // SIGHUP onto a good one: reloaded, and the log names the new serial and fingerprint.
    let fresh = install((-1, 90));
    sigterm_like(&child, "-HUP");
    wait_for_line(&log, "naming the new certificate", |l| {
        l.contains("TLS certificate reloaded") && l.contains(&fresh) && l.contains("sha256")
    })
    .await;
    wss(port, &ca_file, "late")
        .await
        .expect("the new certificate is served");
    let _ = child.kill();
    let _ = child.wait();
}
