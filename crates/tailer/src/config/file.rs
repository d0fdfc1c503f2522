//! The TOML file (`--config`): the same settings as the flags, under the same names (a flag's
//! `--max-in-flight-events` is the key `max_in_flight_events`), layered under what clap parsed
//! from flags and environment.
//!
//! The keys the file accepts are read off the clap command itself, so a setting cannot exist
//! without its key; an unknown key is an error, never ignored. Merging is generic over the
//! argument structs (through their serde form): a value given as a flag or in the environment
//! wins, a list (`header_columns`, `kafka`) takes the file's entries first, then the flags'.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::config::args::{LogFormat, COMMAND_LINE_ONLY};
use crate::config::command_line::CommandLine;
use crate::error::TailerError;

/// The `[kafka]` table of librdkafka options; the flag `-X` (id `kafka`) takes `key=value`.
const KAFKA_TABLE: &str = "kafka";

/// A loaded file. Its values may be secrets, so `Debug` shows only the keys.
#[derive(Default)]
pub struct SettingsFile {
    path: Option<PathBuf>,
    values: serde_json::Map<String, Value>,
}

impl std::fmt::Debug for SettingsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsFile")
            .field("path", &self.path)
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Commands whose arguments are not settings of their own: they write a settings file, print
/// the settings of `run`, or describe the command line.
pub const NOT_SETTINGS: &[&str] = &["import-debezium", "config", "completions", "man"];

/// Every key a file may hold: the ids of every argument of every command, but for the
/// deliberately command-line-only ones.
pub fn known_keys() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, keys: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if !matches!(id, "help" | "version") && !COMMAND_LINE_ONLY.contains(&id) {
                keys.insert(id.to_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            if !NOT_SETTINGS.contains(&sub.get_name()) {
                walk(sub, keys);
            }
        }
    }
    let mut keys = BTreeSet::new();
    walk(&CommandLine::command(), &mut keys);
    keys
}

impl SettingsFile {
    /// Read and check the file; no path gives an empty file.
    pub fn load(path: Option<&Path>) -> Result<SettingsFile, TailerError> {
        let Some(path) = path else {
            return Ok(SettingsFile::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            TailerError::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        SettingsFile::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<SettingsFile, TailerError> {
        let fail =
            |why: String| TailerError::Config(format!("config file {}: {why}", path.display()));
        let table: toml::Table = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        let known = known_keys();
        let mut values = serde_json::Map::new();
        for (key, value) in table {
            if !known.contains(&key) {
                return Err(fail(format!(
                    "unknown field `{key}`; the keys are the flags' names with `_` for `-` \
                     (`outbox-tailer <command> --help` lists them)"
                )));
            }
            let value = if key == KAFKA_TABLE {
                kafka_options(value).map_err(fail)?
            } else {
                serde_json::to_value(value).map_err(|e| fail(format!("`{key}`: {e}")))?
            };
            values.insert(key, value);
        }
        Ok(SettingsFile {
            path: Some(path.to_owned()),
            values,
        })
    }

    /// Whether the file sets `key`.
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The file's path, for messages (`-` without a file).
    pub fn path_text(&self) -> String {
        self.path
            .as_deref()
            .map_or_else(|| "-".to_owned(), |p| p.display().to_string())
    }

    /// `--log-format` from the file, when it sets one.
    pub fn log_format(&self) -> Result<Option<LogFormat>, TailerError> {
        self.values
            .get("log_format")
            .map(|v| serde_json::from_value(v.clone()).map_err(|e| self.error("log_format", &e)))
            .transpose()
    }

    /// `args` (flags and environment) with the file's values filled in underneath.
    pub fn under<T: Serialize + DeserializeOwned>(&self, args: &T) -> Result<T, TailerError> {
        let mut merged = serde_json::to_value(args)
            .map_err(|e| TailerError::Bug(format!("settings are not serializable: {e}")))?;
        let Value::Object(fields) = &mut merged else {
            return Err(TailerError::Bug("settings are not a struct".into()));
        };
        for (key, file_value) in &self.values {
            // A key of another command (a file shared by `run` and `poll`, say).
            let Some(given) = fields.get_mut(key) else {
                continue;
            };
            *given = layer(given.take(), file_value.clone());
            // One key at a time, so a value of the wrong type is named.
            if let Err(e) = serde_json::from_value::<T>(Value::Object(fields.clone())) {
                return Err(self.error(key, &e));
            }
        }
        serde_json::from_value(merged)
            .map_err(|e| TailerError::Bug(format!("layered settings do not read back: {e}")))
    }

    fn error(&self, key: &str, e: &serde_json::Error) -> TailerError {
        let path = self.path.as_deref().unwrap_or(Path::new("-"));
        TailerError::Config(format!("config file {}: `{key}`: {e}", path.display()))
    }
}

/// One setting: what clap found (flag or environment) over what the file says.
fn layer(given: Value, file: Value) -> Value {
    match (given, file) {
        // Not given, or a flag not set (a flag can only switch a setting on).
        (Value::Null | Value::Bool(false), file) => file,
        (Value::Array(given), Value::Array(mut file)) => {
            file.extend(given);
            Value::Array(file)
        }
        (given, _) => given,
    }
}

/// `[kafka]` `key = "value"` entries as the `key=value` strings `-X` takes.
fn kafka_options(value: toml::Value) -> Result<Value, String> {
    let toml::Value::Table(table) = value else {
        return Err("`kafka` must be a table of librdkafka options".into());
    };
    let entries = table.into_iter().map(|(k, v)| {
        let v = match v {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        Value::String(format!("{k}={v}"))
    });
    Ok(Value::Array(entries.collect()))
}
