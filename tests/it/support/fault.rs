//! A TCP proxy a test can cut, stall and restore between a node and a dependency.

use super::*;

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
