//! One webhook request (PROTOCOL §8): the event's JSON, its signature, and the POST.
//!
//! Body: `{"id","type","room","seq","entry"}` where `id` is the entry's id (stable across retries,
//! nodes and replays: the receiver de-duplicates on it, and it is the `Chorus-Event-Id` header too)
//! and `entry` is the entry as clients see it, in its state when sent.
//! Signature: `Chorus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`; the
//! timestamp lets a receiver refuse replays of an old request. HTTP is reqwest on the node's own
//! rustls settings (ring, the system's roots); only a 2xx answer counts as delivered.

use std::fmt::Write;
use std::time::Duration;

use ring::hmac;
use serde::Serialize;

use crate::domain::Message;
use crate::ids::{RoomId, Seq};

#[derive(Serialize)]
struct Payload<'a> {
    id: &'a str,
    r#type: &'static str,
    room: &'a RoomId,
    seq: Seq,
    entry: &'a Message,
}

/// The request body for `entry`.
pub fn body(entry: &Message) -> Vec<u8> {
    serde_json::to_vec(&Payload {
        id: &entry.id,
        r#type: entry.kind.as_str(),
        room: &entry.room,
        seq: entry.seq,
        entry,
    })
    .unwrap_or_default()
}

/// The `Chorus-Signature` header value for `body` sent at `t` (unix seconds).
pub fn signature(key: &hmac::Key, t: u64, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(body.len() + 12);
    signed.extend_from_slice(t.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let tag = hmac::sign(key, &signed);
    let mut out = format!("t={t},v1=");
    for b in tag.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The HTTP client every endpoint shares (connections pooled per host; at most `idle_per_host`
/// kept idle, and no more in flight than the dispatcher's concurrency).
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    pub fn new(idle_per_host: usize) -> Result<Sender, String> {
        let tls = crate::tls::client_config(crate::tls::Verify::Full, None)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .pool_max_idle_per_host(idle_per_host)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("chorus-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Sender { client })
    }

    /// POSTs one event; `Err` carries what went wrong, in words for the dead-letter row (never
    /// the body).
    pub async fn post(
        &self,
        url: &str,
        timeout: Duration,
        event_id: &str,
        signature: String,
        body: Vec<u8>,
    ) -> Result<(), String> {
        let response = self
            .client
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("chorus-event-id", event_id)
            .header("chorus-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} ms", timeout.as_millis())
                } else if e.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    // Without the url: it may hold credentials, and `endpoint` names it.
                    format!("request failed: {}", e.without_url())
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() {
        // Python: hmac.new(b"Jefe", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            signature(&key, 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
    }

    #[test]
    fn the_body_names_the_event_by_the_entry_id_and_carries_the_entry() {
        let room = RoomId::parse("lobby").unwrap();
        let m = Message::new(room, Seq::new(7), "e-1".into(), "ann".into(), "hi".into());
        let v: serde_json::Value = serde_json::from_slice(&body(&m)).unwrap();
        assert_eq!(v["id"], "e-1");
        assert_eq!(v["type"], "message");
        assert_eq!(v["room"], "lobby");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["entry"]["body"], "hi");
        assert_eq!(v["entry"]["seq"], 7);
    }
}
