//! The reconnect storm (`--storm-missed M`, Chorus only): `--sockets` clients in `--rooms` rooms
//! join and remember the room's last seq, then all of them drop. One writer per room posts M
//! messages while they are away. Then every client reconnects at the same instant and joins with
//! `since`. Each must get exactly the missed messages: `recovered:true`, then seqs last+1 ..= last+M
//! in order, no duplicates. Reports how long after the storm began every client was complete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{Barrier, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::proto::{Incoming, Proto};
use crate::{Args, histogram, percentiles};

/// How long a reconnected client may take before it counts as incomplete.
const GIVE_UP: Duration = Duration::from_secs(60);

/// What one reconnected client saw.
struct Outcome {
    recovered: bool,
    got: u64,
    /// Seqs that were not the previous one + 1 (duplicates, gaps, reordering).
    out_of_order: u64,
    complete_after: Option<Duration>,
}

pub async fn run(args: &Args, token: impl Fn(&str) -> String) -> anyhow::Result<serde_json::Value> {
    let missed = args.storm_missed;
    let room_of = |i: usize| format!("{}-{}", args.prefix, i % args.rooms);
    let url_of =
        |i: usize, user: &str| Proto::Chorus.url(&args.url[i % args.url.len()], &token(user));

    // 1. Everyone joins once and notes where the room stood (connections made 200 at a time:
    // this phase is not what is measured).
    let gate = Arc::new(Semaphore::new(200));
    let mut first = Vec::new();
    for i in 0..args.sockets {
        let (url, room, gate) = (url_of(i, &format!("s{i}")), room_of(i), gate.clone());
        first.push(tokio::spawn(async move {
            let _slot = gate.acquire().await;
            let (mut ws, last, _) = Proto::Chorus.connect_and_join(&url, &room, None).await?;
            let _ = ws.close(None).await;
            anyhow::Ok(last)
        }));
    }
    let mut since = Vec::with_capacity(args.sockets);
    for t in first {
        since.push(t.await??);
    }
    eprintln!(
        "{} clients joined and left; posting {missed} per room",
        args.sockets
    );

    // 2. While they are away, a writer per room posts `missed` messages and waits for the acks.
    let mut writers = Vec::new();
    for r in 0..args.rooms {
        let (url, room) = (url_of(r, &format!("writer{r}")), room_of(r));
        writers.push(tokio::spawn(async move {
            let (ws, _, _) = Proto::Chorus.connect_and_join(&url, &room, None).await?;
            let (mut tx, mut rx) = ws.split();
            for n in 0..missed {
                tx.send(Message::text(Proto::Chorus.send_frame(&room, "missed", n)))
                    .await?;
            }
            let mut acked = 0;
            while acked < missed {
                match rx.next().await {
                    Some(Ok(Message::Text(t))) => match Proto::Chorus.parse(&t) {
                        Incoming::Ack | Incoming::AckSeq(_) => acked += 1,
                        Incoming::Error(code) => anyhow::bail!("writer got error {code}"),
                        _ => {}
                    },
                    Some(Ok(_)) => {}
                    _ => anyhow::bail!("writer's connection ended"),
                }
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }

    // 3. The storm: every client reconnects at once with `since`.
    let ready = Arc::new(Barrier::new(args.sockets + 1));
    let mut clients = Vec::new();
    for (i, last) in since.into_iter().enumerate() {
        let (url, room, ready) = (url_of(i, &format!("s{i}")), room_of(i), ready.clone());
        clients.push(tokio::spawn(async move {
            ready.wait().await;
            let began = Instant::now();
            let mut outcome = Outcome {
                recovered: false,
                got: 0,
                out_of_order: 0,
                complete_after: None,
            };
            let run = async {
                let (ws, _, recovered) = Proto::Chorus
                    .connect_and_join(&url, &room, Some(last))
                    .await?;
                outcome.recovered = recovered;
                let (_tx, mut rx) = ws.split();
                let mut prev = last;
                while outcome.got < missed {
                    let Some(Ok(msg)) = rx.next().await else {
                        anyhow::bail!("connection ended")
                    };
                    let Message::Text(t) = msg else { continue };
                    if let Incoming::Message { seq: Some(seq), .. } = Proto::Chorus.parse(&t) {
                        if seq != prev + 1 {
                            outcome.out_of_order += 1;
                        }
                        prev = seq;
                        outcome.got += 1;
                    }
                }
                anyhow::Ok(())
            };
            match tokio::time::timeout(GIVE_UP, run).await {
                Ok(Ok(())) => outcome.complete_after = Some(began.elapsed()),
                Ok(Err(e)) => eprintln!("client {i}: {e}"),
                Err(_) => eprintln!("client {i}: incomplete after {GIVE_UP:?}"),
            }
            outcome
        }));
    }
    ready.wait().await;
    let began = Instant::now();
    let mut times: Histogram<u64> = histogram();
    let (mut complete, mut exact, mut recovered, mut got, mut out_of_order) = (0, 0, 0, 0, 0);
    for c in clients {
        let o = c.await?;
        got += o.got;
        out_of_order += o.out_of_order;
        recovered += u64::from(o.recovered);
        if let Some(t) = o.complete_after {
            complete += 1;
            let _ = times.record((t.as_micros() as u64).max(1));
            if o.recovered && o.out_of_order == 0 && o.got == missed {
                exact += 1;
            }
        }
    }
    let all_done = began.elapsed();
    Ok(serde_json::json!({
        "scenario": {
            "name": "reconnect_storm", "clients": args.sockets, "rooms": args.rooms,
            "missed_per_client": missed, "nodes": args.url.len(),
        },
        "clients_complete": complete,
        "clients_exact": exact,
        "clients_recovered_true": recovered,
        "messages_expected": args.sockets as u64 * missed,
        "messages_received": got,
        "out_of_order": out_of_order,
        "time_to_complete_ms": percentiles(&times),
        "storm_wall_s": all_done.as_secs_f64(),
    }))
}
