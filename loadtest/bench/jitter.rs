//! The jitter benchmark (`--jitter-s J`, Chorus only; issue 29, after AnyCable's 2026 benchmark):
//! `--sockets` readers in `--rooms` rooms, each force-closed (its TCP connection dropped, no close
//! frame) every J s randomised (uniform in 0.5 J .. 1.5 J; the first close anywhere in 0 .. J) for
//! the whole run, and reconnected at once to the next node with `since` = the last seq it holds,
//! while one writer per room posts `--rate` messages/s for `--duration` s on a connection that
//! stays up. Then the readers stop dropping and read until they hold their room's last acked seq.
//!
//! What it reports: the share of messages every reader ends with (each seq after its first join's
//! head, exactly once, in order: a duplicate, a gap or a reorder counts against it), the readers
//! that ended exact, and the time from the start of each reconnect (the moment the old connection
//! was dropped) to caught up: holding every seq up to the `last_seq` of the new `joined`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Barrier, Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::proto::{Incoming, Proto};
use crate::{Args, histogram, percentiles};

/// After the writers finish, how long a reader may take to hold everything.
const SETTLE: Duration = Duration::from_secs(30);

/// What one reader saw over the run.
#[derive(Default)]
struct Reader {
    /// Seqs after the first join's head, each counted once, when it arrived after the ones
    /// before it (a seq that comes again or late is a duplicate).
    got: u64,
    expected: u64,
    duplicates: u64,
    /// Seqs skipped: a later seq arrived before them (never filled afterwards).
    missing: u64,
    reconnects: u64,
    connect_errors: u64,
    not_recovered: u64,
    catch_up: Option<Histogram<u64>>,
}

pub async fn run(args: &Args, token: impl Fn(&str) -> String) -> anyhow::Result<serde_json::Value> {
    let jitter = Duration::from_secs_f64(args.jitter_s);
    let nodes = args.url.len();
    let room_of = |i: usize| format!("{}-{}", args.prefix, i % args.rooms);
    // The room's last acked seq once its writer is done (0 until then), and "writers done".
    let heads: Arc<Vec<AtomicI64>> = Arc::new((0..args.rooms).map(|_| AtomicI64::new(0)).collect());
    let (done_tx, done_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let joined = Arc::new(Barrier::new(args.sockets + 1));

    let mut readers = Vec::new();
    for i in 0..args.sockets {
        let urls: Vec<String> = (0..nodes)
            .map(|n| Proto::Chorus.url(&args.url[n], &token(&format!("r{i}"))))
            .collect();
        let (room, heads, mut done) = (room_of(i), heads.clone(), done_rx.clone());
        let (gate, joined) = (gate.clone(), joined.clone());
        let room_ix = i % args.rooms;
        readers.push(tokio::spawn(async move {
            let mut r = Reader {
                catch_up: Some(histogram()),
                ..Reader::default()
            };
            let mut node = i % nodes;
            let mut first: Option<i64> = None;
            let mut prev = 0i64;
            let mut dropped_at: Option<Instant> = None;
            let mut rng = StdRng::seed_from_u64(rand::random());
            // The first close anywhere in one period, so the drops are spread out.
            let mut life = jitter.mul_f64(rng.random_range(0.0..1.0));
            let mut slot = Some(gate.acquire_owned().await);
            let mut barrier = Some(joined);
            let mut settle_deadline: Option<Instant> = None;
            loop {
                let since = first.map(|_| prev);
                let (ws, last, recovered) =
                    match Proto::Chorus.connect_and_join(&urls[node], &room, since).await {
                        Ok(j) => j,
                        Err(e) => {
                            r.connect_errors += 1;
                            if first.is_none() && r.connect_errors > 20 {
                                eprintln!("reader {i} never joined: {e}");
                                std::process::exit(1);
                            }
                            node = (node + 1) % nodes;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                slot.take();
                if first.is_none() {
                    first = Some(last);
                    prev = last;
                    if let Some(b) = barrier.take() {
                        b.wait().await;
                    }
                } else if !recovered {
                    r.not_recovered += 1;
                }
                let mut caught = false;
                let mut check_caught = |prev: i64, r: &mut Reader| {
                    if !caught && prev >= last {
                        caught = true;
                        if let Some(at) = dropped_at.take() {
                            let us = (at.elapsed().as_micros() as u64).max(1);
                            let _ = r.catch_up.as_mut().map(|h| h.record(us));
                        }
                    }
                };
                check_caught(prev, &mut r);
                let (_tx, mut rx) = ws.split();
                let close_at = tokio::time::Instant::now() + life;
                let ended = loop {
                    let finished = *done.borrow();
                    let head = heads[room_ix].load(Ordering::Acquire);
                    if finished && prev >= head {
                        break true;
                    }
                    if finished && settle_deadline.is_none() {
                        settle_deadline = Some(Instant::now() + SETTLE);
                    }
                    if settle_deadline.is_some_and(|d| Instant::now() >= d) {
                        eprintln!("reader {i}: holds {prev} of {head} after the settle time");
                        break true;
                    }
                    tokio::select! {
                        msg = rx.next() => match msg {
                            Some(Ok(Message::Text(t))) => {
                                if let Incoming::Message { seq: Some(seq), .. } = Proto::Chorus.parse(&t) {
                                    if seq == prev + 1 {
                                        r.got += 1;
                                        prev = seq;
                                    } else if seq <= prev {
                                        r.duplicates += 1;
                                    } else {
                                        r.missing += (seq - prev - 1) as u64;
                                        r.got += 1;
                                        prev = seq;
                                    }
                                    check_caught(prev, &mut r);
                                }
                            }
                            Some(Ok(_)) => {}
                            // The server closed it (or the network did): reconnect.
                            _ => break false,
                        },
                        _ = tokio::time::sleep_until(close_at), if !finished => break false,
                        _ = done.changed(), if !finished => {}
                        _ = tokio::time::sleep(Duration::from_millis(200)), if finished => {}
                    }
                };
                if ended {
                    break;
                }
                // Force-closed: the socket is dropped without a close frame.
                drop(rx);
                drop(_tx);
                dropped_at = Some(Instant::now());
                r.reconnects += 1;
                node = (node + 1) % nodes;
                life = jitter.mul_f64(rng.random_range(0.5..1.5));
            }
            r.expected = (heads[room_ix].load(Ordering::Acquire) - first.unwrap_or(0)).max(0) as u64;
            r
        }));
    }
    joined.wait().await;
    eprintln!(
        "{} readers joined {} rooms over {nodes} node(s); writers post {} msgs/s per room for {} s, readers dropped every ~{} s",
        args.sockets, args.rooms, args.rate, args.duration, args.jitter_s
    );

    // One writer per room on a connection that stays up; its acks give the room's last seq.
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let sent = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for room_ix in 0..args.rooms {
        let url = Proto::Chorus.url(&args.url[room_ix % nodes], &token(&format!("w{room_ix}")));
        let (room, heads, sent) = (room_of(room_ix), heads.clone(), sent.clone());
        let duration = Duration::from_secs(args.duration);
        writers.push(tokio::spawn(async move {
            let (ws, _, _) = Proto::Chorus.connect_and_join(&url, &room, None).await?;
            let (mut tx, mut rx) = ws.split();
            let posts = (duration.as_secs_f64() / period.as_secs_f64()) as u64;
            let send = async {
                let mut tick = tokio::time::interval(period);
                for n in 0..posts {
                    tick.tick().await;
                    let f = format!(r#"{{"type":"send","room":"{room}","body":"j{n}","ref":"m"}}"#);
                    tx.send(Message::text(f)).await?;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            };
            let acks = async {
                let (mut acked, mut last) = (0, 0);
                while acked < posts {
                    match rx.next().await {
                        Some(Ok(Message::Text(t))) => match Proto::Chorus.parse(&t) {
                            Incoming::AckSeq(seq) => {
                                acked += 1;
                                last = last.max(seq);
                            }
                            Incoming::Error(code) => anyhow::bail!("writer got error {code}"),
                            _ => {}
                        },
                        Some(Ok(_)) => {}
                        _ => anyhow::bail!("writer's connection ended"),
                    }
                }
                anyhow::Ok(last)
            };
            let (s, last) = tokio::join!(send, acks);
            s?;
            heads[room_ix].store(last?, Ordering::Release);
            anyhow::Ok(())
        }));
    }
    let began = Instant::now();
    for w in writers {
        w.await??;
    }
    let _ = done_tx.send(true);
    let mut catch_up = histogram();
    let (mut got, mut expected, mut exact, mut dup, mut missing) = (0, 0, 0, 0, 0);
    let (mut reconnects, mut errors, mut not_recovered) = (0, 0, 0);
    for t in readers {
        let r = t.await?;
        got += r.got;
        expected += r.expected;
        dup += r.duplicates;
        missing += r.missing;
        reconnects += r.reconnects;
        errors += r.connect_errors;
        not_recovered += r.not_recovered;
        if r.got == r.expected && r.duplicates == 0 && r.missing == 0 {
            exact += 1;
        }
        if let Some(h) = &r.catch_up {
            catch_up.add(h)?;
        }
    }
    Ok(serde_json::json!({
        "scenario": {
            "name": "jitter", "readers": args.sockets, "rooms": args.rooms, "nodes": nodes,
            "writer_rate_per_room": args.rate, "duration_s": args.duration,
            "drop_every_s": args.jitter_s,
        },
        "posted": sent.load(Ordering::Relaxed),
        "readers_exact": exact,
        "messages_expected": expected,
        "messages_received": got,
        "share_received": if expected == 0 { 0.0 } else { got as f64 / expected as f64 },
        "duplicates_or_reordered": dup,
        "missing": missing,
        "reconnects": reconnects,
        "connect_errors": errors,
        "joins_not_recovered": not_recovered,
        "reconnect_to_caught_up_ms": percentiles(&catch_up),
        "wall_s": began.elapsed().as_secs_f64(),
    }))
}
