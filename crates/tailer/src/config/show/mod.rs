//! `outbox-tailer config`: the effective settings of `run`, each with where its value came from
//! (flag, environment variable, file, default), secrets redacted; and `config --example`, the
//! example file with every key, generated from the same declarations the flags come from.

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory};
use serde_json::Value;

use crate::config::args::{RunArgs, COMMAND_LINE_ONLY};
use crate::config::command_line::CommandLine;
use crate::config::file::SettingsFile;
use crate::config::secret::is_secret_option;
use crate::error::TailerError;

const REDACTED: &str = "<redacted>";

/// One setting as `config` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shown {
    pub key: String,
    /// The value (TOML syntax), or the default's description when nothing set it.
    pub value: String,
    /// `flag`, `env OUTBOX_…`, `file <path>`, or `default`.
    pub source: String,
}

/// The settings of `run` given `matches` (the `config` command's) and the file under them.
pub fn effective(
    matches: &ArgMatches,
    args: &RunArgs,
    file: &SettingsFile,
) -> Result<Vec<Shown>, TailerError> {
    let layered = file.under(args)?;
    let values = serde_json::to_value(&layered)
        .map_err(|e| TailerError::Bug(format!("settings are not serializable: {e}")))?;
    let mut out = Vec::new();
    for arg in run_command().get_arguments() {
        let key = arg.get_id().as_str();
        if is_not_a_key(key) {
            continue;
        }
        let source = match matches.value_source(key) {
            Some(ValueSource::CommandLine) => "flag".to_owned(),
            Some(ValueSource::EnvVariable) => format!(
                "env {}",
                arg.get_env().and_then(|e| e.to_str()).unwrap_or("?")
            ),
            _ if file.has(key) => format!("file {}", file.path_text()),
            _ => "default".to_owned(),
        };
        let value = match values.get(key) {
            None | Some(Value::Null) => default_of(arg).unwrap_or_else(|| "(not set)".into()),
            Some(Value::Array(items)) if items.is_empty() && source == "default" => "(none)".into(),
            Some(v) => toml_of(key, v),
        };
        out.push(Shown {
            key: key.to_owned(),
            value,
            source,
        });
    }
    Ok(out)
}

/// `key = value  # source`, aligned.
pub fn render(shown: &[Shown]) -> String {
    let width = shown
        .iter()
        .map(|s| s.key.len() + s.value.len() + 3)
        .max()
        .unwrap_or(0);
    shown
        .iter()
        .map(|s| {
            let line = format!("{} = {}", s.key, s.value);
            format!("{line:<width$}  # {}\n", s.source)
        })
        .collect()
}

fn run_command() -> clap::Command {
    CommandLine::command()
        .find_subcommand("run")
        .cloned()
        .expect("`run` is a command")
}

fn is_not_a_key(id: &str) -> bool {
    matches!(id, "help" | "version") || COMMAND_LINE_ONLY.contains(&id)
}

/// A value in TOML syntax, secrets redacted.
fn toml_of(key: &str, value: &Value) -> String {
    match (key, value) {
        ("postgres_password", _) => format!("\"{REDACTED}\""),
        ("postgres", Value::String(conn)) => toml_string(&redact_conn(conn)),
        ("kafka", Value::Array(items)) => {
            let shown: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret_option(k.trim()) => format!("{k}={REDACTED}"),
                    _ => kv.to_owned(),
                })
                .map(|kv| toml_string(&kv))
                .collect();
            format!("[{}]", shown.join(", "))
        }
        (_, Value::String(s)) => toml_string(s),
        (_, Value::Array(items)) => {
            let items: Vec<String> = items.iter().map(|v| toml_of("", v)).collect();
            format!("[{}]", items.join(", "))
        }
        (_, other) => other.to_string(),
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A connection string with its password replaced, in both the `key=value` and the URL form.
pub fn redact_conn(conn: &str) -> String {
    let key_value =
        regex::Regex::new(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)").expect("a valid pattern");
    let url = regex::Regex::new(r"^(postgres(?:ql)?://[^:/@]*:)[^@]*@").expect("a valid pattern");
    let conn = key_value.replace_all(conn, format!("${{1}}{REDACTED}"));
    url.replace(&conn, format!("${{1}}{REDACTED}@"))
        .into_owned()
}

/// The `[default: …]` an argument's help states.
fn default_of(arg: &clap::Arg) -> Option<String> {
    let help = arg.get_help()?.to_string();
    let start = help.find("[default: ")? + "[default: ".len();
    let end = help[start..].find(']')? + start;
    Some(help[start..end].to_owned())
}

/// Example values for settings without a default, in TOML syntax.
const EXAMPLES: &[(&str, &str)] = &[
    ("postgres", "\"host=db.internal user=outbox dbname=shop sslmode=verify-full sslrootcert=/etc/outbox/ca.pem\""),
    ("postgres_password", "\"set OUTBOX_POSTGRES_PASSWORD instead of writing it here\""),
    ("replay_slot", "\"outbox_replay\""),
    ("dead_letter_topic", "\"outbox.dlq\""),
    ("message_prefix", "\"outbox\""),
    ("metrics_addr", "\"127.0.0.1:9187\""),
    ("transactional_id", "\"orders-relay\""),
    ("route_topic_regex", "\"(?<routedByValue>.*)\""),
    ("timestamp_column", "\"created_at\""),
    ("linger_ms", "5"),
    ("send_at_once_below", "2000"),
    ("header_columns", "[\"tenant_id:tenant\"]"),
    ("field_placements", "[\"type:header:eventType\"]"),
    ("kafka", ""),
];

/// The example configuration: every key of every command, with its help as comments and its
/// default (or an example) as a commented assignment. `[kafka]` comes last, as TOML needs.
pub fn example() -> String {
    let mut out = String::from(
        "# outbox-tailer configuration: every key, with its default or an example.\n\
         # Generated by `outbox-tailer config --example`; a key is the flag's name with `_`\n\
         # for `-`. Uncomment what you change. Flags and OUTBOX_* variables override the file.\n",
    );
    let mut seen = std::collections::BTreeSet::new();
    let root = CommandLine::command();
    for cmd in std::iter::once(&root).chain(root.get_subcommands()) {
        if crate::config::file::NOT_SETTINGS.contains(&cmd.get_name()) {
            continue;
        }
        let mut section = String::new();
        for arg in cmd.get_arguments() {
            let key = arg.get_id().as_str();
            if is_not_a_key(key) || key == "kafka" || !seen.insert(key.to_owned()) {
                continue;
            }
            section.push('\n');
            for line in help_lines(arg) {
                section.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
            }
            section.push_str(&format!("# {key} = {}\n", example_value(arg)));
        }
        if !section.is_empty() {
            let name = if cmd.get_name() == root.get_name() {
                "every command"
            } else {
                cmd.get_name()
            };
            out.push_str(&format!("\n# ---- {name} ----\n{section}"));
        }
    }
    out.push_str(
        "\n# ---- librdkafka options (-X key=value), e.g. SASL over TLS ----\n\
         # [kafka]\n\
         # \"security.protocol\" = \"SASL_SSL\"\n\
         # \"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\
         # \"sasl.username\" = \"outbox\"\n\
         # \"sasl.password\" = \"set it in OUTBOX_KAFKA_OPTIONS rather than here\"\n",
    );
    out
}

/// The help text, without its `[default: …]`, wrapped to 96 columns.
fn help_lines(arg: &clap::Arg) -> Vec<String> {
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut lines = Vec::new();
    for paragraph in help.split("\n\n") {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if line.len() + word.len() + 1 > 94 && !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

/// The default in TOML syntax, typed by the argument's parser; an example when there is none.
fn example_value(arg: &clap::Arg) -> String {
    let key = arg.get_id().as_str();
    if let Some((_, example)) = EXAMPLES.iter().find(|(k, _)| *k == key) {
        return (*example).to_owned();
    }
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return "false".into();
    }
    let default = default_of(arg).map(|d| d.split(',').next().unwrap_or(&d).trim().to_owned());
    let parsed = arg.get_value_parser().type_id();
    let numeric = [
        std::any::TypeId::of::<u64>(),
        std::any::TypeId::of::<i64>(),
        std::any::TypeId::of::<i32>(),
        std::any::TypeId::of::<usize>(),
    ]
    .iter()
    .any(|t| parsed == *t);
    let number = default
        .as_deref()
        .and_then(|d| d.split_whitespace().next())
        .map(|n| n.trim_end_matches(|c: char| !c.is_ascii_digit()))
        .filter(|n| n.parse::<i64>().is_ok());
    match default {
        Some(_) if numeric && number.is_some() => number.unwrap_or_default().to_owned(),
        Some(d) => toml_string(&d),
        None => {
            let first = arg
                .get_possible_values()
                .first()
                .map(|v| v.get_name().to_owned());
            toml_string(&first.unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests;
