//! Logging setup: `tracing` with JSON lines (`log.format = "json"`) or human text. `RUST_LOG`
//! overrides `log.level`. Tokens and message bodies are never logged by any module.

use tracing_subscriber::EnvFilter;

use crate::config::Log;

pub fn init(log: &Log) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // try_init: a second node in the same process (tests) keeps the first subscriber.
    let _ = if log.format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
