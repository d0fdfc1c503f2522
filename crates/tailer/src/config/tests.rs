use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::config::args::{RunArgs, COMMAND_LINE_ONLY};
use crate::config::command_line::{Command, CommandLine};
use crate::config::file::{known_keys, SettingsFile};

fn temp_toml(name: &str, text: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("outbox-tailer-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn settings_file(text: &str) -> (SettingsFile, PathBuf) {
    let path = temp_toml("secrets", text);
    (SettingsFile::load(Some(&path)).unwrap(), path)
}

fn run_args(args: &[&str]) -> RunArgs {
    let mut argv = vec!["outbox-tailer", "run"];
    argv.extend_from_slice(args);
    match CommandLine::try_parse_from(argv).unwrap().command {
        Command::Run(r) => *r,
        _ => unreachable!(),
    }
}

#[test]
fn defaults_follow_debezium() {
    let c = run_args(&[]).resolve().unwrap();
    assert_eq!(c.route.topic, "outbox.event.${routedByValue}");
    assert_eq!(c.route.key_column, "aggregateid");
    assert_eq!(c.source.slot, "outbox_slot");
    assert_eq!(c.source.table.to_string(), "public.outbox");
}

#[test]
fn password_never_in_debug_output() {
    let c = run_args(&[
        "--postgres",
        "host=db user=u password=hunter2 dbname=x",
        "-X",
        "sasl.password=s3cret",
    ])
    .resolve()
    .unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn secrets_never_in_debug_output_of_the_arguments() {
    let argv = [
        "outbox-tailer",
        "run",
        "--postgres",
        "host=db password=hunter2",
        "--postgres-password",
        "pw-flag-secret",
        "-X",
        "sasl.password=s3cret",
    ];
    let shown = format!("{:?}", CommandLine::try_parse_from(argv).unwrap());
    for secret in ["hunter2", "pw-flag-secret", "s3cret"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let (file, path) =
        settings_file("postgres_password = 'file-secret'\n[kafka]\n'sasl.password' = 'k-secret'\n");
    std::fs::remove_file(path).unwrap();
    let shown = format!("{file:?}");
    assert!(
        !shown.contains("file-secret") && !shown.contains("k-secret"),
        "{shown}"
    );
}

#[test]
fn bad_names_are_rejected() {
    let e = run_args(&["--slot", "Bad-Slot"]).resolve().unwrap_err();
    assert!(e.to_string().contains("slot name"), "{e}");
    let e = run_args(&["--publication", "p'; --"])
        .resolve()
        .unwrap_err();
    assert!(e.to_string().contains("publication"), "{e}");
}

#[test]
fn catch_up_pause_defaults_to_2_ms_and_is_bounded() {
    let c = run_args(&[]).resolve().unwrap();
    assert_eq!(c.catch_up_pause, Duration::from_millis(2));
    let c = run_args(&["--catch-up-pause-ms", "0"]).resolve().unwrap();
    assert!(c.catch_up_pause.is_zero());
    let e = run_args(&["--catch-up-pause-ms", "51"])
        .resolve()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("catch_up_pause_ms must be at most 50"),
        "{e}"
    );
}

#[test]
fn file_unknown_keys_are_rejected() {
    let path = temp_toml("unknown", "slott = 'x'");
    let e = SettingsFile::load(Some(&path)).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(e.to_string().contains("unknown field"), "{e}");
}

#[test]
fn file_values_apply_and_flags_win() {
    let path = temp_toml(
        "apply",
        "slot = 'from_file'\npublication = 'file_pub'\ntopic = 'events.${type}'\n\
         dead_letter_topic = 'dlq'\nmax_in_flight_events = 7\n[kafka]\n'socket.timeout.ms' = '1234'\n",
    );
    let path_str = path.to_str().unwrap();
    let c = run_args(&["--config", path_str, "--publication", "flag_pub"]).resolve();
    std::fs::remove_file(&path).unwrap();
    let c = c.unwrap();
    assert_eq!(c.source.slot, "from_file");
    assert_eq!(
        c.source.publication, "flag_pub",
        "the flag wins over the file"
    );
    assert_eq!(c.route.topic, "events.${type}");
    assert_eq!(c.route.dead_letter_topic.as_deref(), Some("dlq"));
    assert_eq!(c.max_in_flight_events, 7);
    assert!(c
        .sink
        .options
        .contains(&("socket.timeout.ms".to_owned(), "1234".to_owned())));
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let e = run_args(&["--config", "/nonexistent/outbox.toml"])
        .resolve()
        .unwrap_err();
    assert!(e.to_string().contains("cannot read config file"), "{e}");
}

/// Every setting has a flag, an environment variable and a TOML key, all from one declaration;
/// only the arguments in `COMMAND_LINE_ONLY` are flags alone.
#[test]
fn every_setting_has_a_flag_an_env_var_and_a_toml_key() {
    let keys = known_keys();
    let mut envs = std::collections::BTreeMap::new();
    let mut missing = Vec::new();
    let root = CommandLine::command();
    // `import-debezium` converts a file into settings; it has none of its own.
    let commands = std::iter::once(&root).chain(
        root.get_subcommands()
            .filter(|c| !super::file::NOT_SETTINGS.contains(&c.get_name())),
    );
    for cmd in commands {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            // The one-shot arguments come from the command line alone, never the environment
            // (`--config` names the file, so it may).
            if COMMAND_LINE_ONLY.contains(&id) {
                assert!(
                    id == "config" || arg.get_env().is_none(),
                    "--{id} is command line only but reads {:?}",
                    arg.get_env()
                );
                continue;
            }
            match arg.get_env().and_then(|e| e.to_str()) {
                Some(env) => {
                    assert!(env.starts_with("OUTBOX_"), "{id}: {env}");
                    let first = envs.entry(env.to_owned()).or_insert(id.to_owned());
                    assert_eq!(first, id, "{env} names two settings");
                }
                None => missing.push(format!(
                    "{} --{id}: no environment variable",
                    cmd.get_name()
                )),
            }
            if !keys.contains(id) {
                missing.push(format!("{} --{id}: no TOML key", cmd.get_name()));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
    // Each TOML key is the serde name of the same field: a file setting every key of `run`
    // reads back into the arguments (a renamed or skipped field would be refused or lost).
    let run = root.find_subcommand("run").unwrap();
    for arg in run.get_arguments() {
        let id = arg.get_id().as_str();
        if !keys.contains(id) || id == "log_format" {
            continue;
        }
        let args = match CommandLine::try_parse_from(["outbox-tailer", "run"])
            .unwrap()
            .command
        {
            Command::Run(r) => *r,
            _ => unreachable!(),
        };
        let value = serde_json::to_value(&args).unwrap();
        assert!(
            value.get(id).is_some(),
            "--{id} has no serde field of that name"
        );
    }
}

#[test]
fn log_format_comes_from_the_file_too() {
    let path = temp_toml("log", "log_format = 'json'\n");
    let file = SettingsFile::load(Some(&path)).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        file.log_format().unwrap(),
        Some(crate::config::LogFormat::Json)
    );
}

#[test]
fn command_line_only_arguments_are_refused_in_the_file() {
    let path = temp_toml("start", "start_lsn = '0/16B3748'\n");
    let e = SettingsFile::load(Some(&path)).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(e.to_string().contains("unknown field `start_lsn`"), "{e}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_key() {
    let path = temp_toml("type", "max_in_flight_events = 'many'\n");
    let e = run_args(&["--config", path.to_str().unwrap()])
        .resolve()
        .unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(e.to_string().contains("`max_in_flight_events`"), "{e}");
}

#[test]
fn lists_take_the_file_first_then_the_flags() {
    let path = temp_toml(
        "lists",
        "header_columns = ['tenant']\n[kafka]\n'client.rack' = 'a'\n",
    );
    let c = run_args(&[
        "--config",
        path.to_str().unwrap(),
        "--header-column",
        "region:x-region",
        "-X",
        "client.rack=b",
    ])
    .resolve();
    std::fs::remove_file(&path).unwrap();
    let c = c.unwrap();
    assert_eq!(
        c.route.header_columns,
        [
            ("tenant".into(), "tenant".into()),
            ("region".into(), "x-region".into())
        ]
    );
    let racks: Vec<_> = c
        .sink
        .options
        .iter()
        .filter(|(k, _)| k == "client.rack")
        .collect();
    assert_eq!(
        racks.len(),
        2,
        "the flag's comes last, so it wins in librdkafka"
    );
    assert_eq!(racks[1].1, "b");
}

#[test]
fn poll_settings_come_from_the_file() {
    let path = temp_toml(
        "poll",
        "poll_interval_ms = 50\npoll_batch = 500\npoll_drain = true\npoll_after = 'delete'\n",
    );
    let argv = ["outbox-tailer", "poll", "--config", path.to_str().unwrap()];
    let Command::Poll(args) = CommandLine::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let resolved = args.resolve();
    std::fs::remove_file(&path).unwrap();
    let (_, poll) = resolved.unwrap();
    assert_eq!(poll.interval, std::time::Duration::from_millis(50));
    assert_eq!(poll.batch, 500);
    assert!(poll.drain);
    assert_eq!(poll.after, crate::config::AfterPublish::Delete);
}

/// `--create-topics` uses the broker's default replication factor (-1) unless one is given;
/// the mock cluster has no CreateTopics, so tansu's runs of the suite exercise the default.
#[test]
fn created_topics_take_the_brokers_replication_factor_by_default() {
    let c = run_args(&[]).resolve().unwrap();
    assert_eq!(c.sink.topic_replication_factor, -1);
    let c = run_args(&["--topic-replication-factor", "3"])
        .resolve()
        .unwrap();
    assert_eq!(c.sink.topic_replication_factor, 3);
    let e = run_args(&["--topic-replication-factor", "0"])
        .resolve()
        .unwrap_err();
    assert!(e.to_string().contains("topic_replication_factor 0"), "{e}");
}

/// User options that would void the delivery guarantee are refused from flags and the file.
#[test]
fn unsafe_kafka_options_are_refused_from_flags_and_file() {
    let e = run_args(&["-X", "acks=1"]).resolve().unwrap_err();
    assert!(e.to_string().contains("acks=1 is refused"), "{e}");
    let path = temp_toml("unsafe", "[kafka]\n'enable.idempotence' = 'false'\n");
    let e = run_args(&["--config", path.to_str().unwrap()])
        .resolve()
        .unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(
        e.to_string()
            .contains("enable.idempotence=false is refused"),
        "{e}"
    );
}

#[test]
fn a_header_column_may_not_shadow_a_position_header() {
    let e = run_args(&["--header-column", "lsn:outbox-lsn"])
        .resolve()
        .unwrap_err();
    assert!(e.to_string().contains("would shadow"), "{e}");
    assert!(run_args(&["--header-column", "lsn:source-lsn"])
        .resolve()
        .is_ok());
}

/// `--exactly-once` turns Kafka transactions on with bounded batches; their settings alone
/// are refused (they would silently do nothing), and so is `poll --exactly-once`.
#[test]
fn exactly_once_settings_need_the_mode_and_poll_refuses_it() {
    assert!(run_args(&[]).resolve().unwrap().sink.transactions.is_none());
    let t = run_args(&["--exactly-once"])
        .resolve()
        .unwrap()
        .sink
        .transactions
        .expect("transactions on");
    assert_eq!(t.id, None, "derived from the slot at start");
    assert_eq!(
        (t.max_events, t.max_bytes, t.max_wait),
        (250_000, 256 << 20, std::time::Duration::from_millis(100))
    );
    let t = run_args(&[
        "--exactly-once",
        "--transactional-id",
        "orders",
        "--transaction-max-ms",
        "5",
    ])
    .resolve()
    .unwrap()
    .sink
    .transactions
    .unwrap();
    assert_eq!(t.id.as_deref(), Some("orders"));
    assert_eq!(t.max_wait, std::time::Duration::from_millis(5));

    let e = run_args(&["--transactional-id", "orders"])
        .resolve()
        .unwrap_err();
    assert!(e.to_string().contains("add --exactly-once"), "{e}");
    let e = run_args(&["--exactly-once", "--transaction-max-events", "0"])
        .resolve()
        .unwrap_err();
    assert!(e.to_string().contains("transaction_max_events 0"), "{e}");

    let argv = ["outbox-tailer", "poll", "--exactly-once"];
    let Command::Poll(args) = CommandLine::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let e = args.resolve().unwrap_err();
    assert!(e.to_string().contains("mode of `run`"), "{e}");
}

#[test]
fn blank_kafka_options_are_skipped() {
    let c = run_args(&["-X", "client.rack=a", "-X", "", "-X", "  "])
        .resolve()
        .unwrap();
    assert!(c
        .sink
        .options
        .iter()
        .any(|(k, v)| k == "client.rack" && v == "a"));
    assert!(c.sink.options.iter().all(|(k, _)| !k.is_empty()));
}

/// Without `--linger-ms` the producer lingers 5 ms, with `--exactly-once` too; `--linger-ms`
/// sets it, and `-X` still wins.
#[test]
fn the_linger_is_5_ms_unless_given() {
    let option = |c: &crate::TailerConfig, key: &str| {
        c.sink
            .options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let default = run_args(&[]).resolve().unwrap();
    assert_eq!(option(&default, "linger.ms").as_deref(), Some("5"));
    assert_eq!(
        option(&default, "max.in.flight.requests.per.connection"),
        None
    );
    let transactional = run_args(&["--exactly-once"]).resolve().unwrap();
    assert_eq!(option(&transactional, "linger.ms").as_deref(), Some("5"));
    let given = run_args(&["--linger-ms", "0"]).resolve().unwrap();
    assert_eq!(option(&given, "linger.ms").as_deref(), Some("0"));

    let user = run_args(&["-X", "linger.ms=1"]).resolve().unwrap();
    assert_eq!(
        option(&user, "linger.ms").as_deref(),
        Some("1"),
        "-X comes after"
    );
}
