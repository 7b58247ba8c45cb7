//! Settings (PROTOCOL.md §1): parsed once, into types, from layered sources.
//!
//! - [`settings`]: every key as the value a node uses, with its parsing rule on the field;
//! - [`de`]: those rules (durations in ms, comma lists, addresses, log filters);
//! - [`load`]: the layers (defaults → files → environment → CLI), unknown keys, env typos;
//! - [`validate`]: the rules between keys; [`webhooks`]: `[webhook]` and `[[webhooks]]`;
//! - [`error`]: [`ConfigError`], which always names the key at fault.
//!
//! [`Settings::masked`] is the only way settings are printed (secrets hidden).

pub mod de;
mod error;
mod load;
mod settings;
#[cfg(test)]
mod tests;
mod validate;
mod webhooks;

pub use de::{LogFilter, LogFormat};
pub use error::ConfigError;
pub use load::{DEFAULT_TOML, env_typos, find_config_dir};
pub use settings::{
    Auth, Cluster, Database, Http, Limits, Log, Node, Redis, Room, Session, Settings, Shutdown,
};
pub use webhooks::{WEBHOOK_EVENTS, Webhook, WebhookDispatch};
