//! Logging setup: `tracing` with JSON lines (`log.format = "json"`) or human text. `RUST_LOG`
//! overrides `log.level`. Tokens and message bodies are never logged by any module.
//!
//! Other crates log at `info` at most, whatever `RUST_LOG` says: below that some of them write
//! what passes through them (tokio-postgres logs every statement's parameters at `debug`, which
//! are message bodies; fred logs commands at `trace`). Chorus's own modules may log at any level.
//!
//! JSON lines carry the node id as `node` on every line (with the event's own fields, such as
//! `room` and `session`, flattened beside it), so CloudWatch Logs Insights or Loki can filter one
//! node's lines without parsing the stream name.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::Log;

pub fn init(log: &Log, node: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(log.level.as_str()))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal (and never with NO_COLOR): not in files or pipes.
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let guard = filter_fn(may_log);
    // try_init: a second node in the same process (tests) keeps the first subscriber.
    let _ = if log.format == crate::config::LogFormat::Json {
        let json = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(false);
        builder
            .json()
            .event_format(WithNode::new(json, node))
            .finish()
            .with(guard)
            .try_init()
    } else {
        builder.finish().with(guard).try_init()
    };
}

/// The JSON object `line` without its `log.*` keys (`None` if it is not one).
fn without_log_fields(line: &str) -> Option<String> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line.trim_end()).ok()?;
    object.retain(|k, _| !k.starts_with("log."));
    let mut out = serde_json::to_string(&object).ok()?;
    out.push('\n');
    Some(out)
}

/// Chorus's own events at any level; every other crate's at `info` or above (see the module doc).
pub fn may_log(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("chorus") || *meta.level() <= Level::INFO
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
        // Events from crates that use `log` carry `log.file` (a path on the build machine),
        // `log.line`, `log.module_path` and `log.target` (which `target` already says): drop them.
        if line.contains("\"log.") {
            line = without_log_fields(&line).unwrap_or(line);
        }
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"node\":{},{rest}", self.node),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_crates_never_log_below_info_and_chorus_may() {
        let allowed = |target: &'static str, level: Level| {
            struct Cs;
            impl tracing::Callsite for Cs {
                fn set_interest(&self, _: tracing::subscriber::Interest) {}
                fn metadata(&self) -> &Metadata<'_> {
                    unreachable!()
                }
            }
            static CS: Cs = Cs;
            let meta = Metadata::new(
                "e",
                target,
                level,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CS)),
                tracing::metadata::Kind::EVENT,
            );
            may_log(&meta)
        };
        assert!(!allowed("tokio_postgres::query", Level::DEBUG));
        assert!(!allowed("fred::router", Level::TRACE));
        assert!(allowed("tokio_postgres::connection", Level::WARN));
        assert!(allowed("chorus::room", Level::TRACE));
    }

    #[test]
    fn json_lines_lose_the_build_machines_paths() {
        let line = r#"{"level":"INFO","message":"m","log.file":"/root/.cargo/x.rs","log.line":3,"target":"t"}"#;
        let clean = without_log_fields(line).unwrap();
        assert_eq!(
            clean,
            "{\"level\":\"INFO\",\"message\":\"m\",\"target\":\"t\"}\n"
        );
    }
}
