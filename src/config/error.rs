//! A configuration problem, always naming the key at fault (`check-config` prints it on its own
//! line; a node refuses to start with it).

/// A configuration problem, always naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// config-rs's own errors carry the key (every error `de.rs` raises is given one): keep the
    /// text and pull the key out, so `check-config` can name it.
    pub fn from_loader(e: config::ConfigError) -> Self {
        match e {
            config::ConfigError::FileParse { uri, cause } => {
                // The parser's message has the line and column; the key is the file.
                let file = uri.unwrap_or_else(|| "a configuration file".into());
                ConfigError {
                    message: format!("syntax error in {file}: {cause}"),
                    key: file,
                }
            }
            config::ConfigError::At {
                error,
                key: Some(key),
                ..
            } => ConfigError {
                message: error.to_string(),
                key: dotted(&key),
            },
            other => {
                let text = other.to_string();
                let key = ["key `", "field `"]
                    .iter()
                    .find_map(|marker| text.split(marker).nth(1)?.split('`').next())
                    .unwrap_or("?")
                    .to_owned();
                ConfigError { key, message: text }
            }
        }
    }
}

/// config-rs writes a field of an array's table as `webhooks[0]max_attempts`: `webhooks[0].max_attempts`.
fn dotted(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    let mut after_index = false;
    for c in key.chars() {
        if after_index && c != '.' && c != '[' {
            out.push('.');
        }
        after_index = c == ']';
        out.push(c);
    }
    out
}
