//! `--sink ADDR`: the webhook receiver of the load tests (`WEBHOOKS=… loadtest/run`). Answers 204 to
//! every POST at once, and measures commit → receipt: the time from the entry's `ts` (stamped by
//! the node just before its commit) to the request's arrival. Every second it rewrites
//! `--sink-report FILE` with a JSON summary (requests, distinct events, latency percentiles in ms),
//! so the run can read it whenever it is done; it runs until killed.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use hdrhistogram::Histogram;

#[derive(Default)]
struct Seen {
    requests: u64,
    ids: HashSet<String>,
    latency: Option<Histogram<u64>>,
}

async fn receive(body: web::Bytes, seen: web::Data<Mutex<Seen>>) -> HttpResponse {
    let now = chrono::Utc::now();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let ts = v["entry"]["ts"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.requests += 1;
    if let Some(id) = v["id"].as_str() {
        seen.ids.insert(id.to_owned());
    }
    if let Some(ts) = ts {
        let micros = (now - ts.with_timezone(&chrono::Utc))
            .num_microseconds()
            .unwrap_or(0)
            .max(1) as u64;
        let h = seen.latency.get_or_insert_with(crate::histogram);
        let _ = h.record(micros.min(60_000_000));
    }
    HttpResponse::NoContent().finish()
}

pub fn run(addr: &str, report: &str) -> anyhow::Result<()> {
    let seen = web::Data::new(Mutex::new(Seen::default()));
    let writer = seen.clone();
    let report = report.to_owned();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let summary = {
                let s = writer.lock().unwrap_or_else(|e| e.into_inner());
                serde_json::json!({
                    "requests": s.requests,
                    "events": s.ids.len(),
                    "commit_to_received_ms": s.latency.as_ref().map(crate::percentiles),
                })
            };
            let _ = std::fs::write(&report, summary.to_string());
        }
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(seen.clone())
            .app_data(web::PayloadConfig::new(1 << 20))
            .default_service(web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?;
    actix_web::rt::System::new().block_on(server.run())?;
    Ok(())
}
