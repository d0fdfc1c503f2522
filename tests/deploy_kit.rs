//! The deployment kit, checked without a Docker engine: `docker-compose.yml`, the `Dockerfile`
//! and `.dockerignore` against the binaries they run.
//!
//! - Every subcommand and `--flag` a service or the image runs must be in that command's
//!   `--help`, and every `OUTBOX_*` variable must be one it reads (clap prints `[env: NAME]`).
//!   The tailer's settings must also pass its own validation: `outbox-tailer config` with the
//!   same flags and environment exits 0 and names each variable as the source of its setting.
//! - Start order: PostgreSQL's healthcheck goes over TCP (the image's first start runs a
//!   temporary server on the Unix socket only, so a socket check passes too early), the
//!   one-shot jobs (`migrate`, `setup`) retry and are waited for with
//!   `service_completed_successfully`, and nothing waits on a bare start.
//! - Images: exact tags (no `latest`, no major-only tag), a numeric non-root user, exec-form
//!   ENTRYPOINT (SIGTERM reaches the tailer), OCI labels matching Cargo, the metrics port
//!   exposed, a runtime package for every shared library the binary links (`ldd`).
//! - `.dockerignore` keeps target/, .bench/ and .git/ out of the context and keeps in everything
//!   the build copies.
//!
//! The tailer is run as the package's `outbox-tailer-under-test` binary (its `main` is the
//! tailer's); `outbox-app --help` is rendered from its clap definition, which its `main` parses.
//! Each rule also runs against a broken copy of the files, so a check that can no longer fail
//! fails the suite.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use clap::{CommandFactory, Parser};
use yaml_rust2::{Yaml, YamlLoader};

const TAILER: &str = "outbox-tailer";
const APP: &str = "outbox-app";
/// Subcommands that do their work and exit; compose must retry them and wait for their success.
const ONE_SHOT: &[&str] = &["migrate", "setup"];
/// Settings that must agree between the tailer's `setup` and `run`.
const SHARED_SETTINGS: &[&str] = &[
    "OUTBOX_POSTGRES",
    "OUTBOX_SLOT",
    "OUTBOX_PUBLICATION",
    "OUTBOX_TABLE",
];

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn tailer_bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"));
    // Only what the kit sets: nothing from the environment the tests run in.
    cmd.env_clear();
    cmd
}

fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}:\n  - {}",
        failures.join("\n  - ")
    );
}

// ---------------------------------------------------------------------------------------------
// What a command's --help says.

/// A command's `--help`: its flags (and whether each takes a value), its subcommands, whether it
/// takes positional arguments, and the environment variables it reads.
#[derive(Debug, Default)]
struct Help {
    flags: BTreeMap<String, bool>,
    subcommands: Vec<String>,
    positionals: bool,
    env: Vec<String>,
}

impl Help {
    fn parse(text: &str) -> Help {
        let mut help = Help::default();
        let mut section = "";
        for line in text.lines() {
            if !line.starts_with(' ') && line.ends_with(':') {
                section = line;
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            match section {
                "Commands:" if indent == 2 => help.subcommands.push(words[0].to_string()),
                "Arguments:" => help.positionals = true,
                _ => {}
            }
            // `  -X, --kafka-option <KEY=VALUE>` or `      --slot <SLOT>`; descriptions are
            // indented further.
            if indent <= 6 && is_flag(words[0].trim_end_matches(',')) {
                let names: Vec<&str> = words
                    .iter()
                    .map(|w| w.trim_end_matches(','))
                    .take_while(|w| is_flag(w))
                    .collect();
                let takes_value = words
                    .get(names.len())
                    .is_some_and(|w| w.starts_with('<') || w.starts_with("[<"));
                for name in names {
                    help.flags.insert(name.to_string(), takes_value);
                }
            }
        }
        let mut rest = text;
        while let Some(at) = rest.find("[env: ") {
            rest = &rest[at + "[env: ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            help.env.push(name);
        }
        help
    }

    fn reads(&self, var: &str) -> bool {
        self.env.iter().any(|e| e == var)
    }
}

fn is_flag(word: &str) -> bool {
    let long = word.len() > 2
        && word.starts_with("--")
        && word[2..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    let short =
        word.len() == 2 && word.starts_with('-') && word.as_bytes()[1].is_ascii_alphanumeric();
    long || short
}

/// `program [subcommand] --help`, or `None` when there is no such subcommand.
fn help(program: &str, subcommand: Option<&str>) -> Option<Help> {
    let text = match program {
        TAILER => {
            let mut cmd = tailer_bin();
            cmd.args(subcommand).arg("--help");
            let out = cmd.output().expect("running the tailer");
            if !out.status.success() {
                return None;
            }
            String::from_utf8(out.stdout).expect("help is UTF-8")
        }
        APP => {
            let mut cmd = outbox_app::cli::Cli::command();
            // Propagates the global flags into the subcommands, as parsing does.
            cmd.build();
            let mut cmd = match subcommand {
                Some(name) => cmd.find_subcommand(name)?.clone(),
                None => cmd,
            };
            cmd.render_long_help().to_string()
        }
        _ => return None,
    };
    Some(Help::parse(&text))
}

// ---------------------------------------------------------------------------------------------
// Invocations: what the kit runs.

/// One run of a binary from the kit: where it comes from, its argv, its environment.
#[derive(Debug, Clone)]
struct Invocation {
    origin: String,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
}

impl Invocation {
    fn program(&self) -> &str {
        self.argv
            .first()
            .map(|p| p.rsplit('/').next().unwrap_or(p))
            .unwrap_or("")
    }
}

/// The commands an argv runs: itself, or each command of a `sh -c` script.
fn commands(argv: &[String]) -> Vec<Vec<String>> {
    let program = argv.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    let is_shell = matches!(program, Some("sh" | "bash" | "dash"));
    if !is_shell {
        return vec![argv.to_vec()];
    }
    let Some(script) = argv
        .iter()
        .position(|a| a == "-c")
        .and_then(|i| argv.get(i + 1))
    else {
        return vec![argv.to_vec()];
    };
    let mut out = Vec::new();
    for part in script.split(['\n', ';', '|', '&']) {
        let mut words: Vec<String> = part.split_whitespace().map(str::to_string).collect();
        if words.first().is_some_and(|w| w == "exec") {
            words.remove(0);
        }
        if !words.is_empty() {
            out.push(words);
        }
    }
    out
}

/// Checks one invocation against the binary's help; returns its subcommand.
fn check_invocation(inv: &Invocation, failures: &mut Vec<String>) -> Option<String> {
    let program = inv.program().to_string();
    let origin = &inv.origin;
    let Some(top) = help(&program, None) else {
        failures.push(format!(
            "{origin}: runs `{program}`, which is neither {TAILER} nor {APP}"
        ));
        return None;
    };
    let mut current = None::<Help>;
    let mut subcommand = None::<String>;
    let mut args = inv.argv.iter().skip(1);
    let mut asked_for_help = false;
    while let Some(arg) = args.next() {
        let here = current.as_ref().unwrap_or(&top);
        let shown = format!("{program} {}", subcommand.as_deref().unwrap_or(""))
            .trim_end()
            .to_string();
        if arg.starts_with('-') && arg.len() > 1 {
            let (name, inline_value) = match arg.split_once('=') {
                Some((name, _)) => (name, true),
                None => (arg.as_str(), false),
            };
            asked_for_help |= matches!(name, "--help" | "-h" | "--version" | "-V");
            match here.flags.get(name) {
                None => failures.push(format!("{origin}: `{shown}` has no flag {name}")),
                Some(true) if !inline_value => {
                    args.next();
                }
                Some(_) => {}
            }
        } else if subcommand.is_none() && !top.subcommands.is_empty() {
            if !top.subcommands.contains(arg) {
                failures.push(format!("{origin}: `{program}` has no subcommand {arg}"));
                return None;
            }
            current = help(&program, Some(arg));
            subcommand = Some(arg.clone());
        } else if !here.positionals {
            failures.push(format!("{origin}: `{shown}` takes no argument {arg:?}"));
        }
    }
    if subcommand.is_none() && !top.subcommands.is_empty() && !asked_for_help {
        failures.push(format!("{origin}: `{program}` is run without a subcommand"));
    }
    let here = current.as_ref().unwrap_or(&top);
    for var in inv.env.keys().filter(|k| k.starts_with("OUTBOX_")) {
        if !here.reads(var) {
            let shown = format!("{program} {}", subcommand.as_deref().unwrap_or(""));
            failures.push(format!(
                "{origin}: `{}` does not read {var} (no `[env: {var}]` in its --help)",
                shown.trim_end()
            ));
        }
    }
    subcommand
}

/// The values, not only the names: `outbox-tailer config` (the settings `run` would use, each
/// with its source) with the invocation's flags and environment must accept them and show each
/// `OUTBOX_*` variable as the source of its setting (one a flag overrides is dead).
fn check_tailer_values(inv: &Invocation, failures: &mut Vec<String>) {
    let out = tailer_bin()
        .arg("config")
        .args(inv.argv.iter().skip(2))
        .envs(&inv.env)
        .stdin(Stdio::null())
        .output()
        .expect("running outbox-tailer config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        failures.push(format!(
            "{}: `outbox-tailer config` refuses its settings: {}",
            inv.origin,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        return;
    }
    for var in inv.env.keys().filter(|k| k.starts_with("OUTBOX_")) {
        if !stdout.contains(&format!("# env {var}")) {
            failures.push(format!(
                "{}: {var} is set but no setting comes from it (`outbox-tailer config` output)",
                inv.origin
            ));
        }
    }
}

/// The app's values: its own parser on the argv (the environment is the container's, not this
/// process's, so a missing required value may still come from there).
fn check_app_values(inv: &Invocation, failures: &mut Vec<String>) {
    if let Err(e) = outbox_app::cli::Cli::try_parse_from(&inv.argv) {
        use clap::error::ErrorKind;
        let fine = matches!(
            e.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::MissingRequiredArgument
        );
        if !fine {
            failures.push(format!("{}: outbox-app refuses it: {e}", inv.origin));
        }
    }
}

fn check_all(inv: &Invocation, failures: &mut Vec<String>) -> Option<String> {
    let subcommand = check_invocation(inv, failures);
    match (inv.program(), subcommand.as_deref()) {
        (TAILER, Some("run" | "setup")) => check_tailer_values(inv, failures),
        (APP, Some(_)) => check_app_values(inv, failures),
        _ => {}
    }
    subcommand
}

// ---------------------------------------------------------------------------------------------
// Image references.

/// An exact tag: a version with a minor (`17.10-bookworm`, `3.9.1`) or a date
/// (`bookworm-20261005-slim`), or a digest. Not `latest`, not a major alone (`17`, `1-bookworm`).
fn check_tag(origin: &str, image: &str, failures: &mut Vec<String>) {
    if image.contains("@sha256:") {
        return;
    }
    let tag = match image.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag,
        _ => {
            failures.push(format!(
                "{origin}: image {image} has no tag, which means latest"
            ));
            return;
        }
    };
    let bytes = tag.as_bytes();
    let has_minor = bytes
        .windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit());
    let has_date = tag
        .split(|c: char| !c.is_ascii_digit())
        .any(|run| run.len() == 8);
    if tag == "latest" || !(has_minor || has_date) {
        failures.push(format!(
            "{origin}: image {image} floats; pin an exact version (e.g. 17.10-bookworm, 3.9.1)"
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile.

#[derive(Debug, Default)]
struct Stage {
    from: String,
    alias: Option<String>,
    args: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    user: Option<String>,
    entrypoint: Option<Result<Vec<String>, String>>,
    cmd: Option<Result<Vec<String>, String>>,
    expose: Vec<u16>,
    /// Sources of `COPY`/`ADD` from the build context (not `--from`).
    context_sources: Vec<String>,
    runs: Vec<String>,
}

#[derive(Debug, Default)]
struct Dockerfile {
    global_args: BTreeMap<String, String>,
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn parse(text: &str) -> Dockerfile {
        let mut file = Dockerfile::default();
        for (keyword, rest) in instructions(text) {
            let words = split_quoted(&rest);
            if keyword == "FROM" {
                let mut names = words.iter().filter(|w| !w.starts_with("--"));
                let from = names.next().cloned().unwrap_or_default();
                let alias = match (names.next(), names.next()) {
                    (Some(as_), Some(alias)) if as_.eq_ignore_ascii_case("as") => {
                        Some(alias.clone())
                    }
                    _ => None,
                };
                let from = substitute(&from, &file.global_args);
                file.stages.push(Stage {
                    from,
                    alias,
                    ..Stage::default()
                });
                continue;
            }
            let Some(stage) = file.stages.last_mut() else {
                if keyword == "ARG" {
                    for word in &words {
                        let (k, v) = word.split_once('=').unwrap_or((word, ""));
                        file.global_args.insert(k.to_string(), v.to_string());
                    }
                }
                continue;
            };
            match keyword.as_str() {
                "ARG" => {
                    for word in &words {
                        let (k, v) = word.split_once('=').unwrap_or((word, ""));
                        let v = file
                            .global_args
                            .get(k)
                            .filter(|_| v.is_empty())
                            .map_or(v, String::as_str);
                        stage.args.insert(k.to_string(), v.to_string());
                    }
                }
                "ENV" | "LABEL" => {
                    let mut vars = stage.args.clone();
                    vars.extend(stage.env.clone());
                    let map = if keyword == "ENV" {
                        &mut stage.env
                    } else {
                        &mut stage.labels
                    };
                    if words.len() == 2 && !words[0].contains('=') {
                        map.insert(words[0].clone(), substitute(&words[1], &vars));
                    } else {
                        for word in &words {
                            if let Some((k, v)) = word.split_once('=') {
                                map.insert(k.to_string(), substitute(v, &vars));
                            }
                        }
                    }
                }
                "USER" => stage.user = Some(rest.trim().to_string()),
                "ENTRYPOINT" => stage.entrypoint = Some(exec_form(&rest)),
                "CMD" => stage.cmd = Some(exec_form(&rest)),
                "EXPOSE" => stage.expose.extend(
                    words
                        .iter()
                        .filter_map(|w| w.split('/').next()?.parse::<u16>().ok()),
                ),
                "COPY" | "ADD" if !words.iter().any(|w| w.starts_with("--from")) => {
                    let paths: Vec<&String> =
                        words.iter().filter(|w| !w.starts_with("--")).collect();
                    if let Some((_, sources)) = paths.split_last() {
                        stage
                            .context_sources
                            .extend(sources.iter().map(|s| s.to_string()));
                    }
                }
                "RUN" => stage.runs.push(rest),
                _ => {}
            }
        }
        file
    }

    fn runtime(&self) -> &Stage {
        self.stages.last().expect("a FROM")
    }
}

/// `(KEYWORD, rest)` per instruction: comments dropped, continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, rest) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((keyword.to_ascii_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// Words, with double-quoted parts kept whole and unquoted (`a="b c"` is `a=b c`).
fn split_quoted(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => word.extend(chars.next()),
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `${NAME}` and `$NAME` from `vars`.
fn substitute(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = value.to_string();
    for (name, v) in vars {
        out = out.replace(&format!("${{{name}}}"), v);
        out = out.replace(&format!("${name}"), v);
    }
    out
}

/// The JSON array of an exec-form ENTRYPOINT or CMD; the text itself when it is shell form.
fn exec_form(rest: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(rest).map_err(|_| rest.to_string())
}

fn check_dockerfile(dockerfile: &Dockerfile, root_manifest: &str, failures: &mut Vec<String>) {
    let aliases: Vec<&str> = dockerfile
        .stages
        .iter()
        .filter_map(|s| s.alias.as_deref())
        .collect();
    for stage in &dockerfile.stages {
        if !aliases.contains(&stage.from.as_str()) {
            check_tag("Dockerfile FROM", &stage.from, failures);
        }
    }
    let runtime = dockerfile.runtime();
    match runtime.user.as_deref() {
        Some(user) if user.split(':').all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())) => {
            if user.split(':').any(|id| id == "0") {
                failures.push(format!("Dockerfile: USER {user} is root"));
            }
        }
        Some(user) => failures.push(format!(
            "Dockerfile: USER {user} is not numeric (uid:gid); Kubernetes' runAsNonRoot needs a number"
        )),
        None => failures.push("Dockerfile: the runtime stage has no USER, so it runs as root".into()),
    }

    let entrypoint = match &runtime.entrypoint {
        Some(Ok(argv)) => argv.clone(),
        Some(Err(shell)) => {
            failures.push(format!(
                "Dockerfile: ENTRYPOINT {shell} is shell form; SIGTERM would reach /bin/sh, not the tailer"
            ));
            Vec::new()
        }
        None => Vec::new(),
    };
    let cmd = match &runtime.cmd {
        Some(Ok(argv)) => argv.clone(),
        Some(Err(shell)) => {
            failures.push(format!("Dockerfile: CMD {shell} is shell form"));
            Vec::new()
        }
        None => Vec::new(),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        failures.push("Dockerfile: no ENTRYPOINT or CMD".into());
    } else {
        let inv = Invocation {
            origin: "Dockerfile ENTRYPOINT + CMD".into(),
            argv,
            env: runtime.env.clone(),
        };
        check_all(&inv, failures);
    }
    if let Some(addr) = runtime.env.get("OUTBOX_METRICS_ADDR") {
        check_exposed(
            dockerfile,
            "Dockerfile ENV OUTBOX_METRICS_ADDR",
            addr,
            failures,
        );
    }

    let repository = manifest_value(root_manifest, "repository");
    let expected = [
        ("org.opencontainers.image.title", Some(TAILER.to_string())),
        ("org.opencontainers.image.description", None),
        (
            "org.opencontainers.image.licenses",
            Some(env!("CARGO_PKG_LICENSE").to_string()),
        ),
        ("org.opencontainers.image.source", repository),
        (
            "org.opencontainers.image.version",
            Some(env!("CARGO_PKG_VERSION").to_string()),
        ),
    ];
    for (label, want) in expected {
        match (runtime.labels.get(label), want) {
            (None, _) => failures.push(format!("Dockerfile: no LABEL {label}")),
            (Some(got), Some(want)) if *got != want => failures.push(format!(
                "Dockerfile: LABEL {label}={got:?}, but Cargo.toml says {want:?}"
            )),
            (Some(got), _) if got.is_empty() => {
                failures.push(format!("Dockerfile: LABEL {label} is empty"))
            }
            _ => {}
        }
    }
}

fn check_exposed(dockerfile: &Dockerfile, origin: &str, addr: &str, failures: &mut Vec<String>) {
    match addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
    {
        Some(port) if dockerfile.runtime().expose.contains(&port) => {}
        Some(port) => failures.push(format!(
            "{origin}: port {port} is not in the Dockerfile's EXPOSE"
        )),
        None => failures.push(format!("{origin}: {addr:?} has no port")),
    }
}

/// `key = "value"` from the root manifest (the first one: [workspace.package] comes first).
fn manifest_value(manifest: &str, key: &str) -> Option<String> {
    manifest.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn workspace_members(manifest: &str) -> Vec<String> {
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members list");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// .dockerignore, matched as Docker does: the last matching pattern wins, `!` re-includes, a
// pattern that matches a directory excludes what is under it, `**` is any number of directories.

struct DockerIgnore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl DockerIgnore {
    fn parse(text: &str) -> DockerIgnore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (include, pattern) = match l.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, l),
                };
                let segments = pattern
                    .trim_matches('/')
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_string)
                    .collect();
                (include, segments)
            })
            .collect();
        DockerIgnore { patterns }
    }

    fn excludes(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (include, pattern) in &self.patterns {
            if (1..=segments.len()).any(|n| glob_path(pattern, &segments[..n])) {
                excluded = !include;
            }
        }
        excluded
    }
}

fn glob_path(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|i| glob_path(rest, &path[i..])),
        Some((p, rest)) => path.split_first().is_some_and(|(s, tail)| {
            glob_name(p.as_bytes(), s.as_bytes()) && glob_path(rest, tail)
        }),
    }
}

fn glob_name(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| glob_name(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && glob_name(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && glob_name(rest, &name[1..]),
    }
}

fn check_dockerignore(
    ignore: &DockerIgnore,
    dockerfile: &Dockerfile,
    root_manifest: &str,
    failures: &mut Vec<String>,
) {
    for path in [
        "target/release/outbox-tailer",
        "crates/tailer/target/debug/x",
        ".bench/pg/base/1",
        ".git/HEAD",
    ] {
        if !ignore.excludes(path) {
            failures.push(format!(".dockerignore: {path} goes into the build context"));
        }
    }
    let mut needed: Vec<String> = vec!["Cargo.toml".into(), "Cargo.lock".into()];
    for member in workspace_members(root_manifest) {
        needed.push(format!("{member}/Cargo.toml"));
    }
    for stage in &dockerfile.stages {
        needed.extend(stage.context_sources.iter().filter(|s| *s != ".").cloned());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for path in needed {
        if ignore.excludes(&path) {
            failures.push(format!(
                ".dockerignore: excludes {path}, which the build needs"
            ));
        }
        if !root.join(&path).exists() {
            failures.push(format!("Dockerfile: copies {path}, which does not exist"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml.

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A list (`[a, b]`) or a string split on whitespace, as compose takes `command`/`entrypoint`.
fn argv_of(y: &Yaml) -> Option<Vec<String>> {
    match y {
        Yaml::Array(items) => items.iter().map(scalar).collect(),
        Yaml::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
        _ => None,
    }
}

fn environment_of(y: &Yaml) -> BTreeMap<String, String> {
    match y {
        Yaml::Hash(map) => map
            .iter()
            .filter_map(|(k, v)| Some((scalar(k)?, scalar(v).unwrap_or_default())))
            .collect(),
        Yaml::Array(items) => items
            .iter()
            .filter_map(|i| {
                let s = scalar(i)?;
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                Some((k.to_string(), v.to_string()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn key<'a>(y: &'a Yaml, name: &str) -> Option<&'a Yaml> {
    let v = &y[name];
    (!v.is_badvalue() && !v.is_null()).then_some(v)
}

/// A service's healthcheck `test` as words (`CMD` form, or a `CMD-SHELL` string split).
fn healthcheck_words(service: &Yaml) -> Option<Vec<String>> {
    let test = argv_of(key(key(service, "healthcheck")?, "test")?)?;
    match test.first().map(String::as_str) {
        Some("CMD") => Some(test[1..].to_vec()),
        Some("CMD-SHELL") => Some(
            test[1..]
                .join(" ")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        ),
        _ => Some(test),
    }
}

/// A `pg_isready` healthcheck must go over TCP: `-h <host>` or `--host=<host>`, not a socket
/// directory.
fn check_pg_isready(
    origin: &str,
    words: &[String],
    env: &BTreeMap<String, String>,
    failures: &mut Vec<String>,
) {
    let Some(at) = words.iter().position(|w| w.ends_with("pg_isready")) else {
        failures.push(format!("{origin}: the healthcheck does not run pg_isready"));
        return;
    };
    let args = &words[at + 1..];
    let value = |short: &str, long: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            if a == short || a == long {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&format!("{long}="))
                    .or_else(|| a.strip_prefix(short).filter(|v| !v.is_empty()))
                    .map(str::to_string)
            }
        })
    };
    match value("-h", "--host") {
        Some(host) if !host.starts_with('/') => {}
        _ => failures.push(format!(
            "{origin}: pg_isready without -h <host> checks the Unix socket, which the image's \
             temporary init server already answers; use -h 127.0.0.1"
        )),
    }
    for (short, long, var) in [
        ("-U", "--username", "POSTGRES_USER"),
        ("-d", "--dbname", "POSTGRES_DB"),
    ] {
        if let (Some(got), Some(want)) = (value(short, long), env.get(var)) {
            if &got != want {
                failures.push(format!(
                    "{origin}: pg_isready {short} {got}, but {var} is {want}"
                ));
            }
        }
    }
}

fn check_compose(compose: &str, dockerfile: &Dockerfile, failures: &mut Vec<String>) {
    let docs = match YamlLoader::load_from_str(compose) {
        Ok(docs) => docs,
        Err(e) => {
            failures.push(format!("docker-compose.yml is not YAML: {e}"));
            return;
        }
    };
    let Some(services) = docs.first().and_then(|d| d["services"].as_hash()) else {
        failures.push("docker-compose.yml: no services".into());
        return;
    };
    let runtime = dockerfile.runtime();

    // What each service runs.
    let mut runs: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
    let mut tailer_settings: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for (name, service) in services {
        let name = scalar(name).unwrap_or_default();
        let origin = format!("docker-compose.yml service {name}");
        let env = key(service, "environment")
            .map(environment_of)
            .unwrap_or_default();
        if key(service, "build").is_none() {
            match key(service, "image").and_then(scalar) {
                Some(image) => check_tag(&origin, &image, failures),
                None => failures.push(format!("{origin}: neither image nor build")),
            }
            continue;
        }
        let entrypoint = key(service, "entrypoint").and_then(argv_of);
        let command = key(service, "command").and_then(argv_of);
        // An entrypoint set in compose drops the image's CMD (compose spec, as docker run does).
        let argv: Vec<String> = match entrypoint {
            Some(entrypoint) => entrypoint
                .into_iter()
                .chain(command.unwrap_or_default())
                .collect(),
            None => {
                let image_entrypoint = runtime
                    .entrypoint
                    .clone()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                let image_cmd = runtime.cmd.clone().and_then(Result::ok).unwrap_or_default();
                image_entrypoint
                    .into_iter()
                    .chain(command.unwrap_or(image_cmd))
                    .collect()
            }
        };
        for argv in commands(&argv) {
            let inv = Invocation {
                origin: origin.clone(),
                argv,
                env: env.clone(),
            };
            let subcommand = check_all(&inv, failures);
            if inv.program() == TAILER {
                tailer_settings.push((origin.clone(), env.clone()));
                if subcommand.as_deref() == Some("run") {
                    if let Some(addr) = env.get("OUTBOX_METRICS_ADDR") {
                        check_exposed(dockerfile, &origin, addr, failures);
                    }
                }
            }
            runs.entry(name.clone())
                .or_default()
                .push((inv.program().to_string(), subcommand));
        }
    }

    let runs_sub = |service: &str, sub: &str| {
        runs.get(service)
            .is_some_and(|r| r.iter().any(|(_, s)| s.as_deref() == Some(sub)))
    };
    let one_shot = |service: &str| ONE_SHOT.iter().any(|sub| runs_sub(service, sub));

    // Start order.
    for (name, service) in services {
        let name = scalar(name).unwrap_or_default();
        let origin = format!("docker-compose.yml service {name}");
        if one_shot(&name) {
            let restart = key(service, "restart").and_then(scalar).unwrap_or_default();
            if !restart.starts_with("on-failure") {
                failures.push(format!(
                    "{origin}: a one-shot job without `restart: on-failure`; one refused connection ends it for good"
                ));
            }
        }
        let depends = key(service, "depends_on");
        let mut waits_for: Vec<(String, String)> = Vec::new();
        match depends {
            None => {}
            Some(Yaml::Hash(map)) => {
                for (dep, spec) in map {
                    let dep = scalar(dep).unwrap_or_default();
                    let condition = key(spec, "condition").and_then(scalar).unwrap_or_default();
                    waits_for.push((dep, condition));
                }
            }
            Some(_) => failures.push(format!(
                "{origin}: depends_on as a list waits only for the start; name a condition per service"
            )),
        }
        for (dep, condition) in &waits_for {
            let Some(target) = services.get(&Yaml::String(dep.clone())) else {
                failures.push(format!(
                    "{origin}: depends on {dep}, which is not a service"
                ));
                continue;
            };
            let want = if one_shot(dep) {
                "service_completed_successfully"
            } else if key(target, "healthcheck").is_some() {
                "service_healthy"
            } else {
                failures.push(format!(
                    "{origin}: depends on {dep}, which has no healthcheck and does not exit: nothing to wait for"
                ));
                continue;
            };
            if condition != want {
                failures.push(format!(
                    "{origin}: waits for {dep} with {condition:?}; it needs {want}"
                ));
            }
        }
        let waits_on = |sub: &str| waits_for.iter().any(|(dep, _)| runs_sub(dep, sub));
        if runs_sub(&name, "setup") && !waits_on("migrate") {
            failures.push(format!("{origin}: setup does not wait for migrate (the publication needs the outbox table)"));
        }
        if runs_sub(&name, "run") && !waits_on("setup") {
            failures.push(format!("{origin}: run does not wait for setup (the slot)"));
        }

        let image = key(service, "image").and_then(scalar).unwrap_or_default();
        if image.starts_with("postgres:") {
            let env = key(service, "environment")
                .map(environment_of)
                .unwrap_or_default();
            match healthcheck_words(service) {
                Some(words) => check_pg_isready(&origin, &words, &env, failures),
                None => failures.push(format!("{origin}: no healthcheck")),
            }
            let command = key(service, "command")
                .and_then(argv_of)
                .unwrap_or_default();
            if !command.iter().any(|w| w == "wal_level=logical") {
                failures.push(format!(
                    "{origin}: no `-c wal_level=logical`; the tailer needs logical decoding"
                ));
            }
        }
        if runs_sub(&name, "run") {
            let env = key(service, "environment")
                .map(environment_of)
                .unwrap_or_default();
            if let (Some(words), Some(addr)) =
                (healthcheck_words(service), env.get("OUTBOX_METRICS_ADDR"))
            {
                let port = addr.rsplit(':').next().unwrap_or_default();
                if !words
                    .iter()
                    .any(|w| w.contains(&format!("/{port}")) || w.contains(&format!(":{port}")))
                {
                    failures.push(format!(
                        "{origin}: the healthcheck does not ask port {port} of OUTBOX_METRICS_ADDR"
                    ));
                }
            }
        }
    }

    // One slot, one publication, one table, one database between setup and run.
    for var in SHARED_SETTINGS {
        let values: Vec<(&String, &String)> = tailer_settings
            .iter()
            .filter_map(|(origin, env)| Some((origin, env.get(*var)?)))
            .collect();
        if let Some((_, first)) = values.first() {
            if values.iter().any(|(_, v)| v != first) {
                failures.push(format!(
                    "docker-compose.yml: {var} differs between the tailer's services: {values:?}"
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shared libraries the binary links and the runtime packages that hold them.

/// Debian bookworm packages of the shared libraries the tailer may link. Libraries of the
/// base image itself (libc, libm, libgcc_s, the loader) need nothing.
const LIBRARY_PACKAGES: &[(&str, &str)] = &[
    ("libssl.so.3", "libssl3"),
    ("libcrypto.so.3", "libssl3"),
    ("libz.so.1", "zlib1g"),
    ("libzstd.so.1", "libzstd1"),
    ("liblz4.so.1", "liblz4-1"),
    ("libsasl2.so.2", "libsasl2-2"),
    ("libcurl.so.4", "libcurl4"),
];
const BASE_LIBRARIES: &[&str] = &[
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

fn check_runtime_libraries(ldd: &str, dockerfile: &Dockerfile, failures: &mut Vec<String>) {
    let installed: Vec<&str> = dockerfile
        .runtime()
        .runs
        .iter()
        .flat_map(|r| r.split_whitespace())
        .collect();
    for line in ldd.lines() {
        let Some(path) = line.split_whitespace().next() else {
            continue;
        };
        let soname = path.rsplit('/').next().unwrap_or(path);
        if BASE_LIBRARIES.contains(&soname) {
            continue;
        }
        match LIBRARY_PACKAGES.iter().find(|(lib, _)| *lib == soname) {
            Some((_, package)) if installed.contains(package) => {}
            Some((_, package)) => failures.push(format!(
                "Dockerfile: the binary links {soname}, but the runtime stage does not install {package}"
            )),
            None => failures.push(format!(
                "the binary links {soname}: add its Debian package to the runtime stage and to LIBRARY_PACKAGES"
            )),
        }
    }
    if !installed.contains(&"ca-certificates") {
        failures.push("Dockerfile: the runtime stage does not install ca-certificates (TLS to Kafka and PostgreSQL)".into());
    }
}

// ---------------------------------------------------------------------------------------------
// The kit as it is.

struct Kit {
    compose: String,
    dockerfile: String,
    dockerignore: String,
    manifest: String,
}

impl Kit {
    fn load() -> Kit {
        Kit {
            compose: repo_file("docker-compose.yml"),
            dockerfile: repo_file("Dockerfile"),
            dockerignore: repo_file(".dockerignore"),
            manifest: repo_file("Cargo.toml"),
        }
    }

    fn failures(&self) -> Vec<String> {
        let dockerfile = Dockerfile::parse(&self.dockerfile);
        let mut failures = Vec::new();
        check_dockerfile(&dockerfile, &self.manifest, &mut failures);
        check_compose(&self.compose, &dockerfile, &mut failures);
        check_dockerignore(
            &DockerIgnore::parse(&self.dockerignore),
            &dockerfile,
            &self.manifest,
            &mut failures,
        );
        failures
    }
}

/// Replaces `from` (which must be there, so a broken copy cannot silently equal the original).
fn mutate(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the kit no longer contains {from:?}; update this test"
    );
    text.replacen(from, to, 1)
}

fn assert_caught(failures: &[String], expected: &[&str]) {
    for want in expected {
        assert!(
            failures.iter().any(|f| f.contains(want)),
            "no failure mentions {want:?}; failures were:\n  - {}",
            failures.join("\n  - ")
        );
    }
}

#[test]
fn the_compose_file_the_dockerfile_and_dockerignore_match_the_binaries() {
    assert_no_failures("the deployment kit", &Kit::load().failures());
}

#[test]
fn the_runtime_image_installs_every_library_the_tailer_links() {
    let out = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_outbox-tailer-under-test"))
        .output()
        .expect("ldd (libc-bin) is installed");
    assert!(out.status.success(), "ldd failed: {out:?}");
    let dockerfile = Dockerfile::parse(&repo_file("Dockerfile"));
    let mut failures = Vec::new();
    check_runtime_libraries(
        &String::from_utf8_lossy(&out.stdout),
        &dockerfile,
        &mut failures,
    );
    assert_no_failures("runtime libraries", &failures);
}

/// The compose healthcheck of the service that runs the tailer, run as written against a tailer
/// serving its metrics port while it waits for an unreachable PostgreSQL (waiting is healthy).
#[test]
fn the_tailer_healthcheck_passes_against_a_running_tailer() {
    let compose = YamlLoader::load_from_str(&repo_file("docker-compose.yml")).expect("YAML");
    let services = compose[0]["services"].as_hash().expect("services");
    let (service, words, addr) = services
        .iter()
        .find_map(|(name, service)| {
            let words = argv_of(key(key(service, "healthcheck")?, "test")?)?;
            let env = environment_of(key(service, "environment")?);
            Some((
                scalar(name)?,
                words,
                env.get("OUTBOX_METRICS_ADDR")?.clone(),
            ))
        })
        .expect("a service with OUTBOX_METRICS_ADDR and a healthcheck");
    let container_port = addr.rsplit(':').next().expect("a port").to_string();
    let port = outbox_testkit::free_port()
        .expect("a free port")
        .to_string();
    let nobody = outbox_testkit::free_port().expect("a free port");

    let mut tailer = tailer_bin()
        .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .args([
            "--postgres",
            &format!("host=127.0.0.1 port={nobody} user=x dbname=x"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the tailer");
    // The condition: the tailer says its endpoint listens (it then keeps retrying the
    // unreachable PostgreSQL, alive). The log is drained to its end by a thread, so the tailer
    // never writes into a closed pipe; the channel closes if it exits first.
    let (listening_tx, listening) = std::sync::mpsc::channel();
    let stderr = tailer.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if line.contains("serving /metrics") {
                let _ = listening_tx.send(());
            }
        }
    });
    assert!(
        listening.recv().is_ok(),
        "service {service}: the tailer exited before serving /healthz"
    );
    let test: Vec<String> = words
        .iter()
        .map(|w| w.replace(&container_port, &port))
        .collect();
    let (program, args) = match test.first().map(String::as_str) {
        Some("CMD") => (test[1].clone(), test[2..].to_vec()),
        Some("CMD-SHELL") => (
            "sh".to_string(),
            vec!["-c".to_string(), test[1..].join(" ")],
        ),
        _ => panic!("service {service}: healthcheck test {test:?} is neither CMD nor CMD-SHELL"),
    };
    let passed = Command::new(&program)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running the healthcheck")
        .success();
    let _ = tailer.kill();
    let _ = tailer.wait();
    assert!(
        passed,
        "service {service}: healthcheck {test:?} never passed against the tailer on port {port}"
    );
}

#[test]
fn a_broken_compose_file_is_caught() {
    let kit = Kit::load();
    let broken = Kit {
        compose: [
            // The original bug: pg_isready over the socket.
            (r#""pg_isready", "-h", "127.0.0.1", "-p", "5432","#, r#""pg_isready", "-p", "5432","#),
            ("image: postgres:17.10-bookworm", "image: postgres:17"),
            ("image: apache/kafka:3.9.1", "image: apache/kafka:latest"),
            (r#"command: ["migrate", "--migrations", "/migrations"]"#, r#"command: ["migrate", "--migrations-dir", "/migrations"]"#),
            (r#"command: ["setup"]"#, r#"command: ["set-up"]"#),
            ("OUTBOX_METRICS_ADDR: 0.0.0.0:9187", "OUTBOX_METRICS_ADDR: 0.0.0.0:metrics"),
            ("      OUTBOX_POSTGRES: host=postgres user=outbox password=outbox dbname=shop\n    depends_on:\n      postgres:",
             "      OUTBOX_APP_POSTGRES: host=postgres user=outbox password=outbox dbname=shop\n    depends_on:\n      postgres:"),
            ("    restart: on-failure:10\n", "\n"),
            ("      - wal_level=logical\n", "      - wal_level=replica\n"),
        ]
        .iter()
        .fold(kit.compose.clone(), |text, (from, to)| mutate(&text, from, to)),
        ..Kit::load()
    };
    assert_caught(
        &broken.failures(),
        &[
            "pg_isready without -h",
            "postgres:17 floats",
            "apache/kafka:latest floats",
            "has no flag --migrations-dir",
            "has no subcommand set-up",
            "refuses its settings",
            "does not read OUTBOX_APP_POSTGRES",
            "without `restart: on-failure`",
            "wal_level=logical",
        ],
    );
}

#[test]
fn a_broken_start_order_is_caught() {
    let kit = Kit::load();
    let compose = mutate(
        &kit.compose,
        "      setup:\n        condition: service_completed_successfully",
        "      setup:\n        condition: service_started",
    );
    let compose = mutate(
        &compose,
        "    depends_on:\n      migrate:\n        condition: service_completed_successfully\n    restart: on-failure:10\n\n  # Streams",
        "    restart: on-failure:10\n\n  # Streams",
    );
    let compose = mutate(
        &compose,
        "OUTBOX_KAFKA_BROKERS: kafka:9092\n      OUTBOX_SLOT: outbox_slot",
        "OUTBOX_KAFKA_BROKERS: kafka:9092\n      OUTBOX_SLOT: other_slot",
    );
    let broken = Kit {
        compose,
        ..Kit::load()
    };
    assert_caught(
        &broken.failures(),
        &[
            "waits for setup with \"service_started\"; it needs service_completed_successfully",
            "setup does not wait for migrate",
            "OUTBOX_SLOT differs",
        ],
    );
}

#[test]
fn a_broken_dockerfile_is_caught() {
    let kit = Kit::load();
    let dockerfile = [
        ("USER 10001:10001", "USER outbox"),
        (
            "FROM debian:bookworm-20261005-slim",
            "FROM debian:bookworm-slim",
        ),
        (
            "FROM rust:1.95.0-bookworm AS build",
            "FROM rust:1-bookworm AS build",
        ),
        (
            r#"ENTRYPOINT ["outbox-tailer"]"#,
            "ENTRYPOINT outbox-tailer",
        ),
        (
            r#"CMD ["run"]"#,
            r#"CMD ["run", "--metrics-address", "0.0.0.0:9187"]"#,
        ),
        ("EXPOSE 9187", "EXPOSE 8080"),
        (
            "org.opencontainers.image.licenses=\"MIT OR Apache-2.0\"",
            "org.opencontainers.image.licenses=\"MIT\"",
        ),
        (" libssl3 zlib1g", " zlib1g"),
    ]
    .iter()
    .fold(kit.dockerfile.clone(), |text, (from, to)| {
        mutate(&text, from, to)
    });
    let broken = Kit {
        dockerfile,
        ..Kit::load()
    };
    assert_caught(
        &broken.failures(),
        &[
            "USER outbox is not numeric",
            "debian:bookworm-slim floats",
            "rust:1-bookworm floats",
            "is shell form",
            "port 9187 is not in the Dockerfile's EXPOSE",
            "licenses=\"MIT\"",
        ],
    );
    // The shell-form ENTRYPOINT hides the image's command; this one checks the CMD's flag.
    let with_flag = mutate(
        &kit.dockerfile,
        r#"CMD ["run"]"#,
        r#"CMD ["run", "--metrics-address", "0.0.0.0:9187"]"#,
    );
    let failures = Kit {
        dockerfile: with_flag,
        ..Kit::load()
    }
    .failures();
    assert_caught(&failures, &["has no flag --metrics-address"]);

    let ldd = "\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x1)\n\tlibsasl2.so.2 => /lib/libsasl2.so.2 (0x2)\n\tlibfoo.so.9 => /lib/libfoo.so.9 (0x3)\n";
    let mut failures = Vec::new();
    let without_ssl = mutate(&kit.dockerfile, " libssl3 zlib1g", " zlib1g");
    check_runtime_libraries(ldd, &Dockerfile::parse(&without_ssl), &mut failures);
    assert_caught(
        &failures,
        &[
            "does not install libssl3",
            "does not install libsasl2-2",
            "links libfoo.so.9",
        ],
    );
}

#[test]
fn a_broken_dockerignore_is_caught() {
    let kit = Kit::load();
    let dockerignore = mutate(&kit.dockerignore, ".bench/\n", "");
    let dockerignore = format!("{dockerignore}\n!target/\ncrates/app\n");
    let broken = Kit {
        dockerignore,
        ..Kit::load()
    };
    assert_caught(
        &broken.failures(),
        &[
            ".bench/pg/base/1 goes into the build context",
            "target/release/outbox-tailer goes into the build context",
            "excludes crates/app/Cargo.toml",
        ],
    );
}

#[test]
fn dockerignore_matches_as_docker_does() {
    let ignore = DockerIgnore::parse("target/\n**/*.log\n!keep.log\ndocs\n/abs\n*.tmp\n");
    assert!(ignore.excludes("target/release/x"));
    assert!(ignore.excludes("a/b/c.log"));
    assert!(ignore.excludes("c.log"));
    assert!(!ignore.excludes("keep.log"));
    assert!(ignore.excludes("docs/x.md"));
    assert!(ignore.excludes("abs/file"));
    assert!(ignore.excludes("x.tmp"));
    assert!(
        !ignore.excludes("sub/x.tmp"),
        "a pattern without ** matches at the root only"
    );
    assert!(!ignore.excludes("crates/target.rs"));
    assert!(!ignore.excludes("mytarget/x"));
}

#[test]
fn image_tags_must_be_exact() {
    let mut failures = Vec::new();
    for good in [
        "postgres:17.10-bookworm",
        "apache/kafka:3.9.1",
        "debian:bookworm-20261005-slim",
        "rust:1.95.0-bookworm",
        "registry:5000/x/y:2.3",
        "postgres@sha256:abc",
    ] {
        check_tag("t", good, &mut failures);
    }
    assert_no_failures("exact tags", &failures);
    for bad in [
        "postgres",
        "postgres:17",
        "postgres:latest",
        "rust:1-bookworm",
        "registry:5000/x/y",
    ] {
        let mut failures = Vec::new();
        check_tag("t", bad, &mut failures);
        assert_eq!(failures.len(), 1, "{bad} should be refused");
    }
}
