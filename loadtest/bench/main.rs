//! Chorus bench client: N WebSocket sockets in R rooms, each posting at a fixed rate for a while;
//! every body carries its send time and the sender's node, so each receiver measures send → receipt
//! latency, split into same-node and cross-node deliveries when sockets are spread over several
//! nodes (`--url a,b`). Prints a JSON summary: sent, acked, delivered vs expected (acked × room
//! members), order violations (a seq that is not the previous one + 1), latency percentiles, and
//! (with --pid) the servers' RSS idle and at peak under load.
//!
//! Other scenarios: `--protocol socketio` measures the Socket.IO comparison server the same way
//! (`proto.rs`); `--idle` only connects and joins, then reports RSS per socket; `--stalled N` adds
//! N sockets to the first room that never read; `--storm-missed M` is the reconnect storm
//! (`storm.rs`); `--jitter-s J` the jitter benchmark (`jitter.rs`); `--sink ADDR` is the webhook receiver of `WEBHOOKS=… loadtest/run` (`sink.rs`).
//!
//! Run against a node started by `loadtest/run` (or any node sharing the JWT secret):
//! `cargo run --release --example bench -- --url ws://127.0.0.1:8080 --secret S --sockets 1000 --rooms 10`

mod jitter;
mod proto;
mod sink;
mod storm;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{Barrier, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use proto::{Incoming, Proto};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Base WebSocket URL(s) of the node(s); sockets are spread over them round-robin.
    #[arg(long, default_value = "ws://127.0.0.1:8080", value_delimiter = ',')]
    url: Vec<String>,
    /// The nodes' auth.jwt_secret (tokens are signed locally).
    #[arg(long)]
    secret: String,
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Messages per second per socket.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Server process ids whose RSS to report (comma list).
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Room name prefix (a fresh one per run keeps runs apart).
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// A delivery later than this counts as late (see `late_deliveries` in the summary).
    #[arg(long, default_value_t = 1000)]
    late_ms: u64,
    /// The server's protocol: chorus, or socketio for loadtest/socketio/server.js.
    #[arg(long, value_enum, default_value = "chorus")]
    protocol: Proto,
    /// Connect and join only; report the servers' RSS per socket instead of sending.
    #[arg(long)]
    idle: bool,
    /// Extra sockets in the first room (on the first node) that join and never read again.
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Run the reconnect storm instead: each client misses this many messages (see storm.rs).
    #[arg(long, default_value_t = 0)]
    storm_missed: u64,
    /// Chorus only: post the room log mix (70 % messages, 15 % reactions, 10 % reads, 5 %
    /// edits and deletes) instead of messages only; acks and read replies count as acked.
    #[arg(long)]
    mix: bool,
    /// Run the jitter benchmark instead: readers dropped and reconnected every ~this many
    /// seconds while one writer per room posts --rate msgs/s (see jitter.rs).
    #[arg(long, default_value_t = 0.0)]
    jitter_s: f64,
    /// Connections being opened at once while setting up (the storm's reconnect is not limited).
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Run a webhook receiver on this address instead (see sink.rs); needs --sink-report.
    #[arg(long)]
    sink: Option<String>,
    /// Where the webhook receiver writes its JSON summary, every second.
    #[arg(long, default_value = "/tmp/chorus-sink.json")]
    sink_report: String,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
    /// Deliveries whose seq was not the previous one + 1 for that socket (gap, duplicate, reorder).
    out_of_order: AtomicU64,
    /// Deliveries later than `--late-ms` (e.g. held up by a Redis outage), and when the last
    /// of them arrived (Unix ms): with the outage's end, how long the repair took.
    late: AtomicU64,
    last_late_unix_ms: AtomicU64,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

pub(crate) fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.50) as f64 / 1000.0,
        "p90": h.value_at_quantile(0.90) as f64 / 1000.0,
        "p99": h.value_at_quantile(0.99) as f64 / 1000.0,
        "max": h.max() as f64 / 1000.0,
    })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = &args.sink {
        return sink::run(addr, &args.sink_report);
    }
    tokio::runtime::Runtime::new()?.block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let auth = chorus::auth::Auth::new(
        args.secret.as_bytes(),
        &chorus::config::Settings::load(None, &Default::default(), &[])?.auth,
    );
    let token = |user: &str| auth.issue(user, None, Duration::from_secs(3600), None, None);
    if args.jitter_s > 0.0 {
        let summary = jitter::run(&args, token).await?;
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    if args.storm_missed > 0 {
        let summary = storm::run(&args, token).await?;
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    let rss_before: Vec<u64> = args.pid.iter().map(|p| rss_kib(*p)).collect();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let stalled = connect_stalled(&args, &token).await?;
    let proto = args.protocol;
    let epoch = Instant::now();
    let counters = Arc::new(Counters::default());
    let joined = Arc::new(Barrier::new(args.sockets + 1));
    let start = Arc::new(Barrier::new(args.sockets + 1));
    let mut members = vec![0u64; args.rooms];
    let mut acked_per_room: Vec<Arc<AtomicU64>> = Vec::new();
    for _ in 0..args.rooms {
        acked_per_room.push(Arc::new(AtomicU64::new(0)));
    }
    let send_for = Duration::from_secs(args.duration);
    let late_us = args.late_ms * 1000;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut tasks = Vec::new();
    for i in 0..args.sockets {
        let room_ix = i % args.rooms;
        members[room_ix] += 1;
        let room = format!("{}-{room_ix}", args.prefix);
        // Every room gets members on every node (sockets i, i+rooms, … alternate nodes).
        let node_ix = (i / args.rooms) % args.url.len();
        let url = proto.url(&args.url[node_ix], &token(&format!("u{i}")));
        let (counters, joined, start, acked_room, gate) = (
            counters.clone(),
            joined.clone(),
            start.clone(),
            acked_per_room[room_ix].clone(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Same-node and cross-node deliveries, measured apart.
            let (mut same, mut cross) = (histogram(), histogram());
            let mut last_seq: Option<i64> = None;
            let slot = gate.acquire().await;
            let (ws, _, _) = match proto.connect_and_join(&url, &room, None).await {
                Ok(joined) => joined,
                Err(e) => {
                    // The others would wait at the barrier forever.
                    eprintln!("socket {i} could not connect and join: {e}");
                    std::process::exit(1);
                }
            };
            drop(slot);
            let (mut tx, mut rx) = ws.split();
            // For --mix: this socket's acked messages and the room's last seq it saw.
            let own = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
            let seen = Arc::new(std::sync::atomic::AtomicI64::new(0));
            let mix = args.mix;
            joined.wait().await;
            start.wait().await;
            // Spread the sockets' send times over one period.
            let offset = period.mul_f64((i as f64 * 0.618_034) % 1.0);
            let sender = {
                let counters = counters.clone();
                let room = room.clone();
                let (own, seen) = (own.clone(), seen.clone());
                async move {
                    tokio::time::sleep(offset).await;
                    let until = Instant::now() + send_for;
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut n = 0;
                    while Instant::now() < until {
                        tick.tick().await;
                        let t = epoch.elapsed().as_micros() as u64;
                        let body = format!("{t}:{node_ix}");
                        let f = if mix {
                            let mut own = own.lock().unwrap_or_else(|p| p.into_inner());
                            let seen = seen.load(Ordering::Relaxed);
                            proto::Proto::mix_frame(&room, &body, n, &mut own, seen)
                        } else {
                            proto.send_frame(&room, &body, n)
                        };
                        if tx.send(Message::text(f)).await.is_err() {
                            break;
                        }
                        n += 1;
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    tx
                }
            };
            let receiver = async {
                while let Some(Ok(msg)) = rx.next().await {
                    let Message::Text(t) = msg else { continue };
                    match proto.parse(&t) {
                        Incoming::Message { body, seq } => {
                            let now = epoch.elapsed().as_micros() as u64;
                            let parsed = body.and_then(|b| b.split_once(':')).and_then(|(t, n)| {
                                Some((t.parse::<u64>().ok()?, n.parse::<usize>().ok()?))
                            });
                            if let Some((sent, from)) = parsed {
                                let h = if from == node_ix {
                                    &mut same
                                } else {
                                    &mut cross
                                };
                                let latency = now.saturating_sub(sent).max(1);
                                let _ = h.record(latency);
                                if latency > late_us {
                                    counters.late.fetch_add(1, Ordering::Relaxed);
                                    counters
                                        .last_late_unix_ms
                                        .fetch_max(unix_ms(), Ordering::Relaxed);
                                }
                            }
                            if last_seq.zip(seq).is_some_and(|(prev, seq)| seq != prev + 1) {
                                counters.out_of_order.fetch_add(1, Ordering::Relaxed);
                            }
                            last_seq = seq.or(last_seq);
                            if let Some(seq) = seq {
                                seen.fetch_max(seq, Ordering::Relaxed);
                            }
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Incoming::AckSeq(seq) => {
                            counters.acked.fetch_add(1, Ordering::Relaxed);
                            acked_room.fetch_add(1, Ordering::Relaxed);
                            if mix {
                                let mut own = own.lock().unwrap_or_else(|p| p.into_inner());
                                if own.back().is_none_or(|b| *b < seq) {
                                    own.push_back(seq);
                                }
                                if own.len() > 64 {
                                    own.pop_front();
                                }
                            }
                        }
                        Incoming::Ack => {
                            counters.acked.fetch_add(1, Ordering::Relaxed);
                            acked_room.fetch_add(1, Ordering::Relaxed);
                        }
                        Incoming::Error(code) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("error frame: {code}");
                        }
                        Incoming::Other => {}
                    }
                }
            };
            // Receive until the sender is done plus a grace period for in-flight deliveries.
            tokio::pin!(receiver);
            let mut tx = tokio::select! {
                tx = sender => tx,
                _ = &mut receiver => panic!("connection closed while sending"),
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut receiver).await;
            let _ = tx.close().await;
            (same, cross)
        }));
    }
    joined.wait().await;
    let rss_idle: Vec<u64> = args.pid.iter().map(|p| rss_kib(*p)).collect();
    if args.idle {
        // Let first heartbeats and allocator caches settle, then measure again.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss_settled: Vec<u64> = args.pid.iter().map(|p| rss_kib(*p)).collect();
        let total_before: u64 = rss_before.iter().sum();
        let total_after: u64 = rss_settled.iter().sum();
        let summary = serde_json::json!({
            "scenario": { "name": "idle", "sockets": args.sockets, "rooms": args.rooms,
                          "nodes": args.url.len(), "protocol": format!("{:?}", args.protocol) },
            "server_rss_kib": { "before_connect": rss_before, "after_join": rss_idle,
                                "settled_5s": rss_settled },
            "rss_per_socket_kib": (total_after.saturating_sub(total_before)) as f64
                / args.sockets.max(1) as f64,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        std::process::exit(0);
    }
    eprintln!(
        "{} sockets joined {} rooms; sending for {} s",
        args.sockets, args.rooms, args.duration
    );
    let peaks: Arc<Vec<AtomicU64>> = Arc::new(args.pid.iter().map(|_| AtomicU64::new(0)).collect());
    let sampler = {
        let (pids, peaks) = (args.pid.clone(), peaks.clone());
        tokio::spawn(async move {
            loop {
                for (i, p) in pids.iter().enumerate() {
                    peaks[i].fetch_max(rss_kib(*p), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    start.wait().await;
    let (mut all, mut same, mut cross) = (histogram(), histogram(), histogram());
    for t in tasks {
        let (s, c) = t.await?;
        all.add(&s)?;
        all.add(&c)?;
        same.add(s)?;
        cross.add(c)?;
    }
    let elapsed = started.elapsed();
    sampler.abort();
    let rss_peak: Vec<u64> = peaks.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    let expected: u64 = acked_per_room
        .iter()
        .zip(&members)
        .map(|(a, m)| a.load(Ordering::Relaxed) * m)
        .sum();
    let delivered = counters.delivered.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "scenario": {
            "sockets": args.sockets, "rooms": args.rooms, "rate_per_socket": args.rate,
            "duration_s": args.duration, "nodes": args.url.len(),
            "protocol": format!("{:?}", args.protocol), "stalled_sockets": args.stalled,
            "mix": args.mix,
        },
        "sent": counters.sent.load(Ordering::Relaxed),
        "acked": counters.acked.load(Ordering::Relaxed),
        "acked_per_s": counters.acked.load(Ordering::Relaxed) as f64 / args.duration as f64,
        "errors": counters.errors.load(Ordering::Relaxed),
        "delivered": delivered,
        "expected": expected,
        "delivered_ratio": if expected == 0 { 0.0 } else { delivered as f64 / expected as f64 },
        "deliveries_per_s": delivered as f64 / args.duration as f64,
        "out_of_order": counters.out_of_order.load(Ordering::Relaxed),
        "late_deliveries": counters.late.load(Ordering::Relaxed),
        "last_late_delivery_unix_ms": counters.last_late_unix_ms.load(Ordering::Relaxed),
        "latency_ms": percentiles(&all),
        "latency_same_node_ms": percentiles(&same),
        "latency_cross_node_ms": percentiles(&cross),
        "server_rss_kib": {
            "before_connect": rss_before, "idle_after_join": rss_idle, "peak_under_load": rss_peak,
        },
        "wall_s": elapsed.as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    drop(stalled);
    Ok(())
}

/// `--stalled N`: sockets with a 4 KiB receive buffer that join the first room on the first node
/// and never read again. The server must close them (1013, then TCP_USER_TIMEOUT) while its
/// memory stays flat and the other members are unaffected.
async fn connect_stalled(
    args: &Args,
    token: &impl Fn(&str) -> String,
) -> anyhow::Result<Vec<proto::Ws>> {
    let mut held = Vec::new();
    let base = &args.url[0];
    let host = base.trim_start_matches("ws://").trim_end_matches('/');
    for k in 0..args.stalled {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let tcp = socket.connect(host.parse()?).await?;
        let url = Proto::Chorus.url(base, &token(&format!("stalled{k}")));
        let (mut ws, _) =
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
                .await?;
        let room = format!("{}-0", args.prefix);
        ws.send(Message::text(format!(
            r#"{{"type":"join","room":"{room}"}}"#
        )))
        .await?;
        held.push(ws);
    }
    Ok(held)
}
