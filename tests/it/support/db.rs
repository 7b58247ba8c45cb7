//! This run's databases: a migrated template cloned per test, dropped when the run exits.

use super::*;

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
