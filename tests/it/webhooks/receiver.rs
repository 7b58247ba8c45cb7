//! A real HTTP webhook receiver for the tests: it checks every request's signature, records what
//! arrived, and answers as the test says (2xx, an error status for some or all bodies, or slowly),
//! counting the requests it has in flight at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use ring::hmac;
use serde_json::Value;

pub const SECRET: &str = "receiver-secret-0123456789";

/// How the receiver answers.
#[derive(Debug, Clone)]
pub enum Mode {
    Ok,
    /// Every request gets this status.
    Fail(u16),
    /// Requests whose entry body contains the text get 500; the others 200.
    FailBodies(String),
    /// Answer 200 after this long.
    Slow(Duration),
}

/// One request that arrived.
#[derive(Debug, Clone)]
pub struct Got {
    pub event_id: String,
    pub id: String,
    pub kind: String,
    pub room: String,
    pub seq: i64,
    pub entry: Value,
    /// The `Chorus-Signature` matched the body and the shared secret.
    pub signed: bool,
    /// Answered 2xx.
    pub accepted: bool,
}

#[derive(Default)]
struct State {
    mode: std::sync::Mutex<Option<Mode>>,
    got: std::sync::Mutex<Vec<Got>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Counts a request out when its handler ends, also when the server drops it half way (the
/// client hung up on a slow answer).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
}

fn verify(signature: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(tag) = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(v1.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let fresh = t
        .parse::<u64>()
        .is_ok_and(|t| t.abs_diff(chorus::auth::now_secs()) < 300);
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let signed = [t.as_bytes(), b".", body].concat();
    fresh && hmac::verify(&key, &signed, &tag).is_ok()
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&state.in_flight);
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signed = verify(&header("chorus-signature"), &body);
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mode = state.mode.lock().unwrap().clone().unwrap_or(Mode::Ok);
    let status = match &mode {
        Mode::Ok => 200,
        Mode::Fail(code) => *code,
        Mode::FailBodies(text) => {
            if v["entry"]["body"]
                .as_str()
                .unwrap_or_default()
                .contains(text.as_str())
            {
                500
            } else {
                200
            }
        }
        Mode::Slow(d) => {
            tokio::time::sleep(*d).await;
            200
        }
    };
    state.got.lock().unwrap().push(Got {
        event_id: header("chorus-event-id"),
        id: v["id"].as_str().unwrap_or_default().to_owned(),
        kind: v["type"].as_str().unwrap_or_default().to_owned(),
        room: v["room"].as_str().unwrap_or_default().to_owned(),
        seq: v["seq"].as_i64().unwrap_or(-1),
        entry: v["entry"].clone(),
        signed,
        accepted: (200..300).contains(&status),
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        let state = Arc::new(State::default());
        *state.mode.lock().unwrap() = Some(mode);
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .default_service(web::post().to(handle))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("receiver binds");
        let addr = server.addrs()[0];
        // Runs until the test's runtime ends.
        actix_web::rt::spawn(server.run());
        Receiver { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = Some(mode);
    }

    /// Every request so far, in arrival order.
    pub fn got(&self) -> Vec<Got> {
        self.state.got.lock().unwrap().clone()
    }

    /// The accepted requests, in arrival order.
    pub fn accepted(&self) -> Vec<Got> {
        self.got().into_iter().filter(|g| g.accepted).collect()
    }

    /// Requests being answered now (a `Slow` receiver holds each for its delay).
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}
