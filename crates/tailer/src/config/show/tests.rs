use std::path::Path;

use clap::{CommandFactory, FromArgMatches, Parser};

use super::*;
use crate::config::args::{PeekArgs, PollArgs, ReplayArgs, StatusArgs};
use crate::config::file::known_keys;

/// The example file in the repository, which `config --example` must reproduce.
const COMMITTED: &str = include_str!("../../../../../docs/outbox-tailer.example.toml");

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("outbox-show-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_committed_example_is_what_config_example_prints() {
    assert!(
        COMMITTED == example(),
        "docs/outbox-tailer.example.toml is stale: regenerate it with \
         `outbox-tailer config --example > docs/outbox-tailer.example.toml`"
    );
}

#[test]
fn the_example_names_every_key_and_parses_with_every_line_uncommented() {
    let text = example();
    for key in known_keys() {
        let named =
            key == "kafka" && text.contains("# [kafka]") || text.contains(&format!("\n# {key} = "));
        assert!(named, "the example does not name `{key}`");
    }
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            *l == "[kafka]"
                || l.split_once(" = ").is_some_and(|(k, _)| {
                    k.starts_with('"') || k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let path = temp_file("example.toml", &uncommented);
    let file = SettingsFile::load(Some(Path::new(&path))).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(&path).unwrap();
    // Every value has the type its command reads.
    use crate::config::Command as C;
    let parse = |argv: &[&str]| {
        let argv = std::iter::once("outbox-tailer").chain(argv.iter().copied());
        CommandLine::try_parse_from(argv).unwrap().command
    };
    file.under(&RunArgs::default()).unwrap();
    let C::Poll(poll) = parse(&["poll"]) else {
        panic!()
    };
    file.under::<PollArgs>(&poll).unwrap();
    let C::Status(status) = parse(&["status"]) else {
        panic!()
    };
    file.under::<StatusArgs>(&status).unwrap();
    let C::Peek(peek) = parse(&["peek"]) else {
        panic!()
    };
    file.under::<PeekArgs>(&peek).unwrap();
    let C::Replay(replay) = parse(&["replay", "--from-lsn", "0/1"]) else {
        panic!()
    };
    file.under::<ReplayArgs>(&replay).unwrap();
}

fn matches_of(argv: &[&str]) -> (clap::ArgMatches, RunArgs) {
    let matches = CommandLine::command().try_get_matches_from(argv).unwrap();
    let cli = CommandLine::from_arg_matches(&matches).unwrap();
    let crate::config::Command::Config(args) = cli.command else {
        panic!("a config command")
    };
    let sub = matches.subcommand_matches("config").unwrap().clone();
    (sub, args.run)
}

#[test]
fn each_value_says_where_it_came_from_and_secrets_stay_hidden() {
    let path = temp_file(
        "tailer.toml",
        "slot = \"from_file\"\nlinger_ms = 1\n[kafka]\n\"sasl.password\" = \"hunter2\"\n",
    );
    let file_arg = path.display().to_string();
    let (matches, args) = matches_of(&[
        "outbox-tailer",
        "config",
        "--config",
        &file_arg,
        "--postgres",
        "host=db user=u password=s3cret dbname=shop",
        "--linger-ms",
        "2",
    ]);
    let file = SettingsFile::load(Some(&path)).unwrap();
    let shown = effective(&matches, &args, &file).unwrap();
    let get = |k: &str| shown.iter().find(|s| s.key == k).unwrap().clone();
    assert_eq!(get("linger_ms").value, "2");
    assert_eq!(get("linger_ms").source, "flag", "a flag wins over the file");
    assert_eq!(get("slot").value, "\"from_file\"");
    assert!(get("slot").source.starts_with("file "));
    assert_eq!(get("publication").source, "default");
    assert_eq!(get("publication").value, "outbox_pub");
    let text = render(&shown);
    assert!(
        !text.contains("s3cret") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(text.contains("password=<redacted>"), "{text}");
    assert!(text.contains("sasl.password=<redacted>"), "{text}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn passwords_are_redacted_in_both_connection_string_forms() {
    assert_eq!(
        redact_conn("host=db password='a b' user=x"),
        "host=db password=<redacted> user=x"
    );
    assert_eq!(
        redact_conn("postgresql://outbox:pw@db:5432/shop"),
        "postgresql://outbox:<redacted>@db:5432/shop"
    );
    assert_eq!(redact_conn("host=db user=x"), "host=db user=x");
}

#[test]
fn completions_and_the_man_page_come_from_the_command_definitions() {
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let mut script = Vec::new();
        clap_complete::generate(
            shell,
            &mut CommandLine::command(),
            "outbox-tailer",
            &mut script,
        );
        let script = String::from_utf8(script).unwrap();
        for word in ["import-debezium", "exactly-once", "value-format"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(CommandLine::command())
        .render(&mut page)
        .unwrap();
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains(".TH outbox-tailer 1"), "{page}");
    assert!(
        page.contains("import\\-debezium"),
        "the commands are listed"
    );
}
