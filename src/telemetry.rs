//! Logging setup: `tracing` with JSON lines (`log.format = "json"`) or human text. `RUST_LOG`
//! overrides `log.level`. Tokens and message bodies are never logged by any module.
//!
//! JSON lines carry the node id as `node` on every line (with the event's own fields, such as
//! `room` and `session`, flattened beside it), so CloudWatch Logs Insights or Loki can filter one
//! node's lines without parsing the stream name.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::Log;

pub fn init(log: &Log, node: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // try_init: a second node in the same process (tests) keeps the first subscriber.
    let _ = if log.format == "json" {
        let json = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(false);
        builder
            .json()
            .event_format(WithNode::new(json, node))
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Wraps a JSON event format and puts `"node":"<id>"` first in every object.
struct WithNode<F> {
    inner: F,
    /// The node id as a JSON string literal (quoted and escaped once).
    node: String,
}

impl<F> WithNode<F> {
    fn new(inner: F, node: &str) -> Self {
        let node = serde_json::to_string(node).unwrap_or_else(|_| "\"\"".into());
        Self { inner, node }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithNode<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"node\":{},{rest}", self.node),
            None => writer.write_str(&line),
        }
    }
}
