//! The layered loader (PROTOCOL.md §1). Layers, later wins: the embedded `config/default.toml` →
//! `<dir>/default.toml` → `<dir>/$CHORUS_ENV.toml` → environment variables `CHORUS__SECTION__KEY`
//! → CLI overrides. The environment is passed in as a map so tests never call `set_var`. Every
//! key is parsed once, into its type (`settings.rs`); an unknown key, a value that does not parse
//! and a rule between keys that fails are all errors naming the key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::settings::Settings;

/// The defaults, compiled in so the binary runs from anywhere.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The sections and keys of the embedded `config/default.toml`: every key there is.
fn known_keys() -> Vec<(String, Vec<String>)> {
    let table: toml::Table = toml::from_str(DEFAULT_TOML).unwrap_or_default();
    table
        .into_iter()
        .map(|(section, v)| {
            let keys = v
                .as_table()
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default();
            (section, keys)
        })
        .collect()
}

/// Every key of the merged layers that `config/default.toml` does not have, as `section.key`
/// (all of them, not only the first one serde would stop at).
fn unknown_keys(raw: &config::Config) -> Vec<String> {
    let known = known_keys();
    let Ok(tree) = raw
        .clone()
        .try_deserialize::<HashMap<String, config::Value>>()
    else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    for (section, value) in tree {
        let keys: Vec<String> = value
            .into_table()
            .map(|t| t.into_keys().collect())
            .unwrap_or_default();
        if section == "webhooks" {
            // An array of tables: serde checks each table's keys (`deny_unknown_fields`).
            continue;
        }
        match known.iter().find(|(s, _)| *s == section) {
            None if keys.is_empty() => unknown.push(section),
            None => unknown.extend(keys.iter().map(|k| format!("{section}.{k}"))),
            Some((_, allowed)) => unknown.extend(
                keys.iter()
                    .filter(|k| !allowed.contains(k))
                    .map(|k| format!("{section}.{k}")),
            ),
        }
    }
    unknown.sort();
    unknown
}

/// Environment variables that look meant for Chorus but are ignored, each with the name that
/// would work: `CHORUS_DATABASE_URL` (one underscore) is `CHORUS__DATABASE__URL`.
pub fn env_typos(env: &HashMap<String, String>) -> Vec<String> {
    let sections: Vec<String> = known_keys().into_iter().map(|(s, _)| s).collect();
    let mut warnings: Vec<String> = env
        .keys()
        .filter(|k| k.starts_with("CHORUS_") && !k.starts_with("CHORUS__") && *k != "CHORUS_ENV")
        .map(|k| {
            let rest = k["CHORUS_".len()..].to_lowercase();
            let meant = sections.iter().find_map(|s| {
                let key = rest.strip_prefix(s.as_str())?.strip_prefix('_')?;
                Some(format!(
                    "CHORUS__{}__{}",
                    s.to_uppercase(),
                    key.to_uppercase()
                ))
            });
            match meant {
                Some(m) => format!("{k} is ignored: did you mean {m} (double underscores)?"),
                None => format!(
                    "{k} is ignored: settings are CHORUS__SECTION__KEY (double underscores)"
                ),
            }
        })
        .collect();
    warnings.sort();
    warnings
}

/// Where to look for `default.toml` and `$CHORUS_ENV.toml`: the given folder, else `./config`, else the
/// package's own `config/` folder; `None` means only the embedded defaults apply.
pub fn find_config_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = explicit {
        return Some(dir.to_path_buf());
    }
    let candidates = [
        PathBuf::from("config"),
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
    ];
    candidates
        .into_iter()
        .find(|d| d.join("default.toml").is_file())
}

impl Settings {
    /// Builds settings from the layers. `env` is the process environment (or a test's map);
    /// `overrides` are `section.key = value` pairs from the CLI, applied last.
    pub fn load(
        dir: Option<&Path>,
        env: &HashMap<String, String>,
        overrides: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        use config::{Config, Environment, File, FileFormat};
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            return Err(ConfigError::new(
                "--config-dir",
                format!("{} is not a folder", dir.display()),
            ));
        }
        if let Some(dir) = dir {
            builder = builder.add_source(File::from(dir.join("default.toml")).required(false));
            if let Some(name) = env.get("CHORUS_ENV").filter(|n| !n.is_empty()) {
                let path = dir.join(format!("{name}.toml"));
                if !path.is_file() {
                    return Err(ConfigError::new(
                        "CHORUS_ENV",
                        format!("{} does not exist", path.display()),
                    ));
                }
                builder = builder.add_source(File::from(path));
            }
        }
        let chorus_env: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("CHORUS__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("CHORUS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(chorus_env)),
        );
        for (key, value) in overrides {
            builder = builder
                .set_override(key.as_str(), value.as_str())
                .map_err(|e| ConfigError::new(key, e.to_string()))?;
        }
        let raw = builder.build().map_err(ConfigError::from_loader)?;
        let unknown = unknown_keys(&raw);
        if let Some(first) = unknown.first() {
            return Err(ConfigError::new(
                first,
                format!(
                    "unknown key{} {} (config/default.toml lists every key)",
                    if unknown.len() > 1 { "s" } else { "" },
                    unknown.join(", ")
                ),
            ));
        }
        let mut settings: Settings = raw.try_deserialize().map_err(ConfigError::from_loader)?;
        if settings.node.id.is_empty() {
            settings.node.id = default_node_id();
        }
        settings.validate()?;
        Ok(settings)
    }
}

fn default_node_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{host}-{}", crate::ids::random_hex(6))
}
