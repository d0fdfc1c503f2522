//! The Kubernetes manifests in `deploy/kubernetes/`, checked without a cluster against the
//! tailer they deploy (active/standby: two replicas of `run` on one slot).
//!
//! - Every container's subcommand and `--flag` is in that command's `--help`, every `OUTBOX_*`
//!   variable is one it reads (clap prints `[env: NAME]`), and every Secret or ConfigMap key a
//!   container refers to exists. The mounted TOML file is resolved through the volume to its
//!   ConfigMap key and loaded with the tailer's own `SettingsFile::load`; then `outbox-tailer
//!   config` must accept the container's flags, environment and file together, and says what
//!   the settings come to (the shutdown deadline, the metrics address).
//! - The relay: `replicas: 2`; probes on `/healthz` (liveness) and `/readyz` (readiness) at the
//!   metrics port, served on every interface; `terminationGracePeriodSeconds` more than 3 s
//!   longer than the shutdown deadline; a rollout strategy that can replace the active replica
//!   (a standby never becomes Ready while the old active one holds the slot); the replicas kept
//!   on different nodes; scrape annotations on the metrics port; a PodDisruptionBudget
//!   (`minAvailable: 1`) selecting the relay's pods and no others.
//! - The setup Job runs `setup` on the same server, slot, publication and table as `run`.
//! - Every pod: non-root with a numeric user, read-only root, no capabilities, no privilege
//!   escalation, seccomp; images pinned to the release (never `latest`); label, annotation and
//!   `env` values are strings (Kubernetes refuses a YAML `true` there); no secret in a ConfigMap.
//! - `kustomization.yaml` lists every manifest but the ones kept out on purpose, and its
//!   `images:` entry names an image the manifests use.
//!
//! Each rule also runs against a broken copy of the files, so a check that can no longer fail
//! fails the suite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use outbox_tailer::config::file::SettingsFile;
use yaml_rust2::{Yaml, YamlLoader};

/// The manifests, relative to the repository root.
const DIR: &str = "deploy/kubernetes";
/// Manifests kept out of kustomization.yaml, and why.
const NOT_IN_KUSTOMIZATION: &[(&str, &str)] = &[
    (
        "secret.example.yaml",
        "placeholders; applied, they would overwrite the real Secret",
    ),
    (
        "setup-job.yaml",
        "one-time, and a Job's pod template cannot be re-applied with a new image",
    ),
];
/// The binary every container runs (the image's ENTRYPOINT when `command` is not given).
const TAILER: &str = "outbox-tailer";
/// What the grace period must leave after the tailer's own stop deadline: the rest of the exit.
const GRACE_MARGIN_SECS: i64 = 3;
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECS: i64 = 30;
/// Settings `setup` and `run` must agree on: `setup` prepares what `run` streams from.
const SHARED_SETTINGS: &[&str] = &["postgres", "slot", "publication", "table"];
/// Connection-string parameters that name a file the container must have.
const PG_FILE_PARAMETERS: &[&str] = &["sslrootcert", "sslcert", "sslkey"];
/// Kinds whose `spec.template` is a pod template.
const POD_WORKLOADS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------------------------------------
// YAML access.

/// The node at `path`, or `None` when any step is missing or null.
fn at<'a>(y: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    let mut node = y;
    for key in path {
        node = &node[*key];
        if node.is_badvalue() || node.is_null() {
            return None;
        }
    }
    Some(node)
}

fn str_at<'a>(y: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    at(y, path).and_then(Yaml::as_str)
}

fn int_at(y: &Yaml, path: &[&str]) -> Option<i64> {
    at(y, path).and_then(Yaml::as_i64)
}

fn list_at<'a>(y: &'a Yaml, path: &[&str]) -> &'a [Yaml] {
    at(y, path)
        .and_then(Yaml::as_vec)
        .map_or(&[], Vec::as_slice)
}

/// A map of strings (labels, `matchLabels`, `data`); non-string values are left out (the
/// string rule reports them).
fn string_map(y: Option<&Yaml>) -> BTreeMap<String, String> {
    let Some(hash) = y.and_then(Yaml::as_hash) else {
        return BTreeMap::new();
    };
    hash.iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
        .collect()
}

/// A scalar as Kubernetes would read it into a string field.
fn scalar_text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(list: &[Yaml]) -> Vec<String> {
    list.iter().filter_map(scalar_text).collect()
}

/// Whether `selector` (matchLabels) selects pods labelled `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Just enough base64 for a Secret's `data`.
fn base64_decode(text: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut len = 0;
    let mut out = Vec::new();
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let value = ALPHABET.iter().position(|a| *a == c)?;
        bits = (bits << 6) | u32::try_from(value).ok()?;
        len += 6;
        if len >= 8 {
            len -= 8;
            out.push(u8::try_from((bits >> len) & 0xff).ok()?);
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------------
// What a command's --help says.

/// A subcommand's `--help`: its flags (each with whether it takes a value) and the environment
/// variables it reads.
#[derive(Debug, Clone, Default)]
struct Help {
    flags: BTreeMap<String, bool>,
    env: BTreeSet<String>,
}

impl Help {
    fn parse(text: &str) -> Help {
        let mut help = Help::default();
        for line in text.lines() {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim_start();
            // Flag lines are indented by 2 (`-X, --kafka-option`) or 6 (`--slot`); descriptions
            // by more, and may start with a flag's name (`--exactly-once: commit …`).
            if indent <= 6 && trimmed.starts_with('-') {
                let takes_value = trimmed.contains('<');
                for word in trimmed.split([',', ' ']) {
                    if word.starts_with('-') && word.len() > 1 {
                        help.flags.insert(word.to_owned(), takes_value);
                    }
                }
            }
            let mut rest = line;
            while let Some(at) = rest.find("[env: ") {
                rest = &rest[at + "[env: ".len()..];
                let end = rest.find(['=', ']']).unwrap_or(rest.len());
                help.env.insert(rest[..end].to_owned());
            }
        }
        help
    }
}

fn tailer_bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"));
    // Only what the manifests set: nothing from the environment the tests run in.
    cmd.env_clear();
    cmd
}

/// `outbox-tailer <subcommand> --help`, or `None` when there is no such subcommand.
fn help(subcommand: &str) -> Option<Help> {
    static CACHE: OnceLock<Mutex<BTreeMap<String, Option<Help>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(known) = cache.lock().unwrap().get(subcommand) {
        return known.clone();
    }
    let out = tailer_bin()
        .args([subcommand, "--help"])
        .output()
        .expect("run the tailer");
    let parsed = out
        .status
        .success()
        .then(|| Help::parse(&String::from_utf8_lossy(&out.stdout)));
    cache
        .lock()
        .unwrap()
        .insert(subcommand.to_owned(), parsed.clone());
    parsed
}

// ---------------------------------------------------------------------------------------------
// The manifests.

/// One YAML document of one file.
#[derive(Debug)]
struct Object {
    file: String,
    doc: Yaml,
}

impl Object {
    fn kind(&self) -> &str {
        str_at(&self.doc, &["kind"]).unwrap_or("")
    }

    fn name(&self) -> &str {
        str_at(&self.doc, &["metadata", "name"]).unwrap_or("")
    }

    fn origin(&self) -> String {
        format!("{}: {}/{}", self.file, self.kind(), self.name())
    }

    /// The pod template of a workload.
    fn pod_template(&self) -> Option<&Yaml> {
        if self.kind() == "CronJob" {
            return at(&self.doc, &["spec", "jobTemplate", "spec", "template"]);
        }
        POD_WORKLOADS
            .contains(&self.kind())
            .then(|| at(&self.doc, &["spec", "template"]))
            .flatten()
    }

    /// A ConfigMap's or Secret's entries, decoded.
    fn entries(&self) -> BTreeMap<String, String> {
        let mut entries = string_map(at(&self.doc, &["data"]));
        if self.kind() == "Secret" {
            for value in entries.values_mut() {
                *value = base64_decode(value).unwrap_or_default();
            }
            entries.extend(string_map(at(&self.doc, &["stringData"])));
        }
        entries
    }
}

/// The files of `deploy/kubernetes/` (as text, so a test can break a copy) and their documents.
#[derive(Debug)]
struct Kit {
    files: BTreeMap<String, String>,
    objects: Vec<Object>,
    parse_failures: Vec<String>,
}

impl Kit {
    fn load() -> Kit {
        let dir = repo_root().join(DIR);
        let mut files = BTreeMap::new();
        let mut pending = vec![dir.clone()];
        while let Some(next) = pending.pop() {
            let entries = std::fs::read_dir(&next)
                .unwrap_or_else(|e| panic!("reading {}: {e}", next.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                ) {
                    let name = path.strip_prefix(&dir).unwrap().display().to_string();
                    files.insert(name, std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        Kit::from_files(files)
    }

    fn from_files(files: BTreeMap<String, String>) -> Kit {
        let mut objects = Vec::new();
        let mut parse_failures = Vec::new();
        for (file, text) in &files {
            match YamlLoader::load_from_str(text) {
                Ok(docs) => {
                    objects.extend(docs.into_iter().filter(|d| !d.is_null()).map(|doc| Object {
                        file: file.clone(),
                        doc,
                    }))
                }
                Err(e) => parse_failures.push(format!("{file}: not YAML: {e}")),
            }
        }
        Kit {
            files,
            objects,
            parse_failures,
        }
    }

    /// A copy with `from` (which must occur exactly once in `file`) replaced by `to`.
    fn broken(&self, file: &str, from: &str, to: &str) -> Kit {
        let text = &self.files[file];
        assert_eq!(
            text.matches(from).count(),
            1,
            "{file} must hold {from:?} exactly once for this test to break it"
        );
        let mut files = self.files.clone();
        files.insert(file.to_owned(), text.replacen(from, to, 1));
        Kit::from_files(files)
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Object> {
        self.objects
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.iter().filter(move |o| o.kind() == kind)
    }

    fn workloads(&self) -> impl Iterator<Item = (&Object, &Yaml)> {
        self.objects
            .iter()
            .filter_map(|o| Some((o, o.pod_template()?)))
    }

    /// Every rule; what broke, one line each.
    fn failures(&self) -> Vec<String> {
        let mut failures = self.parse_failures.clone();
        let mut tailers = Vec::new();
        for (workload, template) in self.workloads() {
            check_pod_security(workload, template, &mut failures);
            for container in list_at(template, &["spec", "initContainers"])
                .iter()
                .chain(list_at(template, &["spec", "containers"]))
            {
                check_image(workload, container, &mut failures);
                if let Some(tailer) =
                    Tailer::read(self, workload, template, container, &mut failures)
                {
                    tailers.push(tailer);
                }
            }
        }
        check_strings(self, &mut failures);
        check_no_secrets_in_config_maps(self, &mut failures);
        check_relay(self, &tailers, &mut failures);
        check_setup(&tailers, &mut failures);
        check_connection_files(self, &tailers, &mut failures);
        check_kustomization(self, &mut failures);
        failures
    }
}

// ---------------------------------------------------------------------------------------------
// A container running the tailer, and what its settings come to.

/// A container that runs `outbox-tailer <subcommand>`.
#[derive(Debug)]
struct Tailer<'a> {
    origin: String,
    workload: &'a Object,
    template: &'a Yaml,
    container: &'a Yaml,
    subcommand: String,
    /// The arguments after the subcommand.
    args: Vec<String>,
    /// The environment, with the values the manifests give (from Secrets and ConfigMaps too).
    env: BTreeMap<String, String>,
    /// `outbox-tailer config`'s answer for these arguments, environment and file: setting →
    /// (value, source).
    settings: BTreeMap<String, (String, String)>,
}

impl<'a> Tailer<'a> {
    fn read(
        kit: &'a Kit,
        workload: &'a Object,
        template: &'a Yaml,
        container: &'a Yaml,
        failures: &mut Vec<String>,
    ) -> Option<Tailer<'a>> {
        let origin = format!(
            "{}, container {}",
            workload.origin(),
            str_at(container, &["name"]).unwrap_or("?")
        );
        let mut argv = strings(list_at(container, &["command"]));
        if argv.is_empty() {
            // The image's ENTRYPOINT (Dockerfile: ["outbox-tailer"]).
            argv.push(TAILER.to_owned());
        }
        argv.extend(strings(list_at(container, &["args"])));
        if Path::new(&argv[0]).file_name().and_then(|n| n.to_str()) != Some(TAILER) {
            return None;
        }
        let Some(subcommand) = argv.get(1).cloned() else {
            failures.push(format!("{origin}: `{TAILER}` without a subcommand"));
            return None;
        };
        let Some(help) = help(&subcommand) else {
            failures.push(format!(
                "{origin}: `{TAILER} {subcommand}` is not a subcommand"
            ));
            return None;
        };
        let args = argv[2..].to_vec();
        check_flags(&origin, &subcommand, &help, &args, failures);
        let env = environment(kit, &origin, container, failures);
        for name in env.keys().filter(|n| n.starts_with("OUTBOX_")) {
            if !help.env.contains(name) {
                failures.push(format!(
                    "{origin}: `{TAILER} {subcommand}` does not read {name} (not in its --help)"
                ));
            }
        }
        let mut tailer = Tailer {
            origin,
            workload,
            template,
            container,
            subcommand,
            args,
            env,
            settings: BTreeMap::new(),
        };
        tailer.settings = tailer.resolve(kit, failures);
        Some(tailer)
    }

    /// The `--config` file: the flag, or OUTBOX_CONFIG.
    fn config_path(&self) -> Option<String> {
        let flag = self.args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix("--config=")
                .map(str::to_owned)
                .or_else(|| (a == "--config").then(|| self.args.get(i + 1).cloned())?)
        });
        flag.or_else(|| self.env.get("OUTBOX_CONFIG").cloned())
    }

    /// Load the mounted TOML file as the tailer does, then ask `outbox-tailer config` what the
    /// flags, environment and file come to.
    fn resolve(&self, kit: &Kit, failures: &mut Vec<String>) -> BTreeMap<String, (String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let mut args = self.args.clone();
        let mut env = self.env.clone();
        if let Some(path) = self.config_path() {
            let text = match mounted_file(kit, self.template, self.container, &path) {
                Ok(text) => text,
                Err(why) => {
                    failures.push(format!("{}: --config {path}: {why}", self.origin));
                    return BTreeMap::new();
                }
            };
            let local = dir.path().join("outbox.toml");
            std::fs::write(&local, text).unwrap();
            if let Err(e) = SettingsFile::load(Some(&local)) {
                failures.push(format!(
                    "{}: the file mounted at {path} is refused: {e}",
                    self.origin
                ));
                return BTreeMap::new();
            }
            let local = local.display().to_string();
            for i in 0..args.len() {
                if args[i] == "--config" {
                    if let Some(value) = args.get_mut(i + 1) {
                        value.clone_from(&local);
                    }
                } else if args[i].starts_with("--config=") {
                    args[i] = format!("--config={local}");
                }
            }
            if env.contains_key("OUTBOX_CONFIG") {
                env.insert("OUTBOX_CONFIG".into(), local);
            }
        }
        // `config` takes every setting of `run`, and `setup`'s are a subset of them.
        let out = tailer_bin()
            .arg("config")
            .args(&args)
            .envs(&env)
            .output()
            .expect("run the tailer");
        if !out.status.success() {
            failures.push(format!(
                "{}: `{TAILER} config` refuses these settings: {}",
                self.origin,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return BTreeMap::new();
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (key, rest) = line.split_once(" = ")?;
                let (value, source) = rest.rsplit_once("  # ")?;
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                Some((key.to_owned(), (value.to_owned(), source.trim().to_owned())))
            })
            .collect()
    }

    fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(|(value, _)| value.as_str())
    }
}

/// Flags against `--help`: each must exist, and one that takes a value must have one.
fn check_flags(
    origin: &str,
    subcommand: &str,
    help: &Help,
    args: &[String],
    failures: &mut Vec<String>,
) {
    let mut words = args.iter().peekable();
    while let Some(word) = words.next() {
        let (flag, inline_value) = if let Some(long) = word.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, _)) => (format!("--{name}"), true),
                None => (word.clone(), false),
            }
        } else if word.starts_with('-') && word.len() > 2 && word.is_char_boundary(2) {
            // `-Xkey=value`
            (word[..2].to_owned(), true)
        } else if word.starts_with('-') && word.len() == 2 {
            (word.clone(), false)
        } else {
            failures.push(format!(
                "{origin}: `{TAILER} {subcommand}` takes no argument `{word}`"
            ));
            continue;
        };
        let next_is_value = words.peek().is_some_and(|next| !next.starts_with('-'));
        match help.flags.get(&flag) {
            None => {
                failures.push(format!(
                    "{origin}: `{flag}` is not a flag of `{TAILER} {subcommand}` (see its --help)"
                ));
                // Its value, if it has one, is no argument of its own.
                if !inline_value && next_is_value {
                    words.next();
                }
            }
            // The value is the next word, which this consumes.
            Some(true) if !inline_value && words.next().is_none() => {
                failures.push(format!("{origin}: `{flag}` needs a value"));
            }
            _ => {}
        }
    }
}

/// The container's environment: `env` (values, Secret and ConfigMap keys) and `envFrom`.
/// A reference to a missing object or key (not marked optional) is a pod that never starts.
fn environment(
    kit: &Kit,
    origin: &str,
    container: &Yaml,
    failures: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for from in list_at(container, &["envFrom"]) {
        let prefix = str_at(from, &["prefix"]).unwrap_or("");
        for (kind, field) in [("Secret", "secretRef"), ("ConfigMap", "configMapRef")] {
            let Some(name) = str_at(from, &[field, "name"]) else {
                continue;
            };
            match kit.find(kind, name) {
                Some(object) => env.extend(
                    object
                        .entries()
                        .into_iter()
                        .map(|(k, v)| (format!("{prefix}{k}"), v)),
                ),
                None if at(from, &[field, "optional"]).and_then(Yaml::as_bool) == Some(true) => {}
                None => failures.push(format!("{origin}: envFrom {kind} {name} is not here")),
            }
        }
    }
    for var in list_at(container, &["env"]) {
        let Some(name) = str_at(var, &["name"]) else {
            continue;
        };
        let value = if let Some(value) = at(var, &["value"]) {
            scalar_text(value)
        } else {
            let mut found = None;
            for (kind, field) in [("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")] {
                let (Some(object), Some(key)) = (
                    str_at(var, &["valueFrom", field, "name"]),
                    str_at(var, &["valueFrom", field, "key"]),
                ) else {
                    continue;
                };
                found = kit.find(kind, object).and_then(|o| o.entries().remove(key));
                let optional = at(var, &["valueFrom", field, "optional"]).and_then(Yaml::as_bool);
                if found.is_none() && optional != Some(true) {
                    failures.push(format!(
                        "{origin}: {name} refers to key {key} of {kind} {object}, which is not here"
                    ));
                }
            }
            found
        };
        // A value from the downward API is not known here; the name is still checked.
        env.insert(name.to_owned(), value.unwrap_or_default());
    }
    env
}

/// The text of the file at `path` in the container: the ConfigMap or Secret key that the
/// volume mounted over it holds.
fn mounted_file(
    kit: &Kit,
    template: &Yaml,
    container: &Yaml,
    path: &str,
) -> Result<String, String> {
    let mount = list_at(container, &["volumeMounts"])
        .iter()
        .filter_map(|m| Some((m, str_at(m, &["mountPath"])?)))
        .filter(|(m, dir)| {
            if str_at(m, &["subPath"]).is_some() {
                path == *dir
            } else {
                path.starts_with(&format!("{}/", dir.trim_end_matches('/')))
            }
        })
        .max_by_key(|(_, dir)| dir.len());
    let Some((mount, dir)) = mount else {
        return Err("no volume is mounted there".into());
    };
    let volume_name = str_at(mount, &["name"]).unwrap_or("");
    let Some(volume) = list_at(template, &["spec", "volumes"])
        .iter()
        .find(|v| str_at(v, &["name"]) == Some(volume_name))
    else {
        return Err(format!("the pod has no volume {volume_name}"));
    };
    let (kind, name, source) = if let Some(name) = str_at(volume, &["configMap", "name"]) {
        ("ConfigMap", name, &volume["configMap"])
    } else if let Some(name) = str_at(volume, &["secret", "secretName"]) {
        ("Secret", name, &volume["secret"])
    } else {
        return Err(format!(
            "volume {volume_name} is neither a ConfigMap nor a Secret"
        ));
    };
    let relative = match str_at(mount, &["subPath"]) {
        Some(sub) => sub.to_owned(),
        None => path[dir.trim_end_matches('/').len() + 1..].to_owned(),
    };
    let items = list_at(source, &["items"]);
    let key = if items.is_empty() {
        relative.clone()
    } else {
        items
            .iter()
            .find(|i| str_at(i, &["path"]) == Some(relative.as_str()))
            .and_then(|i| str_at(i, &["key"]))
            .ok_or_else(|| format!("{kind} {name}'s items do not map a key to {relative}"))?
            .to_owned()
    };
    let object = kit
        .find(kind, name)
        .ok_or_else(|| format!("{kind} {name} is not here"))?;
    object
        .entries()
        .remove(&key)
        .ok_or_else(|| format!("{kind} {name} has no key {key}"))
}

// ---------------------------------------------------------------------------------------------
// The rules.

/// The relay: the workload running `run`.
fn check_relay(kit: &Kit, tailers: &[Tailer], failures: &mut Vec<String>) {
    let relays: Vec<&Tailer> = tailers.iter().filter(|t| t.subcommand == "run").collect();
    let [relay] = relays.as_slice() else {
        failures.push(format!(
            "expected one container running `{TAILER} run`, found {}",
            relays.len()
        ));
        return;
    };
    let workload = relay.workload;
    let origin = &relay.origin;
    let spec = &workload.doc["spec"];
    let pod = &relay.template["spec"];
    let labels = string_map(at(relay.template, &["metadata", "labels"]));

    // Active and standby.
    let replicas = int_at(spec, &["replicas"]).unwrap_or(1);
    if replicas != 2 {
        failures.push(format!(
            "{}: replicas is {replicas}; active/standby runs 2",
            workload.origin()
        ));
    }
    check_rollout(workload, replicas, failures);

    // Probes on the metrics address, which must be reachable from the kubelet.
    // Without `config`'s answer (already reported) the settings are unknown: checks that
    // need them are skipped rather than failed a second time.
    let resolved = !relay.settings.is_empty();
    let metrics_addr = relay.setting("metrics_addr").unwrap_or("off");
    let port = match metrics_addr.rsplit_once(':') {
        _ if !resolved => None,
        Some((host, port)) => {
            if !matches!(host, "0.0.0.0" | "[::]" | "::") {
                failures.push(format!(
                    "{origin}: metrics on {metrics_addr} are not reachable by the kubelet's \
                     probes or Prometheus; serve them on 0.0.0.0"
                ));
            }
            port.parse::<i64>().ok()
        }
        None => {
            failures.push(format!(
                "{origin}: no metrics address (--metrics-addr), so no /healthz or /readyz"
            ));
            None
        }
    };
    let ports = list_at(relay.container, &["ports"]);
    if port.is_some() && !ports.iter().any(|p| int_at(p, &["containerPort"]) == port) {
        failures.push(format!(
            "{origin}: the metrics port {port:?} is not among the container's ports"
        ));
    }
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let Some(get) = at(relay.container, &[probe, "httpGet"]) else {
            failures.push(format!("{origin}: no {probe} with httpGet {path}"));
            continue;
        };
        if str_at(get, &["path"]) != Some(path) {
            failures.push(format!(
                "{origin}: {probe} asks {:?}, not {path}",
                str_at(get, &["path"])
            ));
        }
        let target = match &get["port"] {
            Yaml::Integer(n) => Some(*n),
            Yaml::String(name) => ports
                .iter()
                .find(|p| str_at(p, &["name"]) == Some(name.as_str()))
                .and_then(|p| int_at(p, &["containerPort"])),
            _ => None,
        };
        if resolved && (target.is_none() || target != port) {
            failures.push(format!(
                "{origin}: {probe} goes to port {target:?}, the metrics port is {port:?}"
            ));
        }
    }
    // One slow answer must not restart the relay.
    if int_at(relay.container, &["livenessProbe", "failureThreshold"]).unwrap_or(3) < 2 {
        failures.push(format!(
            "{origin}: livenessProbe restarts on a single failure"
        ));
    }

    // The stop deadline inside the grace period.
    let shutdown = relay
        .setting("shutdown_timeout_secs")
        .and_then(|s| s.parse::<i64>().ok());
    let grace = int_at(pod, &["terminationGracePeriodSeconds"]).unwrap_or(DEFAULT_GRACE_SECS);
    match shutdown {
        Some(shutdown) if grace > shutdown + GRACE_MARGIN_SECS => {}
        Some(shutdown) => failures.push(format!(
            "{}: terminationGracePeriodSeconds {grace} does not exceed the tailer's shutdown \
             deadline ({shutdown} s) by more than {GRACE_MARGIN_SECS} s: the kubelet would \
             SIGKILL it mid-drain",
            workload.origin()
        )),
        None if !resolved => {}
        None => failures.push(format!(
            "{origin}: no shutdown_timeout_secs in `{TAILER} config`'s answer"
        )),
    }

    check_anti_affinity(workload, &labels, failures);

    // Scrape annotations on the metrics port.
    let annotations = string_map(at(relay.template, &["metadata", "annotations"]));
    let expect = [
        ("prometheus.io/scrape", Some("true".to_owned())),
        ("prometheus.io/port", port.map(|p| p.to_string())),
        ("prometheus.io/path", Some("/metrics".to_owned())),
    ];
    for (key, want) in expect {
        if (resolved || want.is_some()) && annotations.get(key) != want.as_ref() {
            failures.push(format!(
                "{}: pod annotation {key} is {:?}, expected {want:?}",
                workload.origin(),
                annotations.get(key)
            ));
        }
    }

    // The disruption budget: the relay's pods, and only those.
    let budgets: Vec<&Object> = kit
        .of_kind("PodDisruptionBudget")
        .filter(|b| {
            selects(
                &string_map(at(&b.doc, &["spec", "selector", "matchLabels"])),
                &labels,
            )
        })
        .collect();
    if budgets.is_empty() {
        failures.push(format!(
            "no PodDisruptionBudget selects the relay's pods (labels {labels:?})"
        ));
    }
    for budget in budgets {
        if int_at(&budget.doc, &["spec", "minAvailable"]) != Some(1) {
            failures.push(format!("{}: minAvailable is not 1", budget.origin()));
        }
        let selector = string_map(at(&budget.doc, &["spec", "selector", "matchLabels"]));
        for (other, template) in kit.workloads() {
            let other_labels = string_map(at(template, &["metadata", "labels"]));
            if !std::ptr::eq(other, workload) && selects(&selector, &other_labels) {
                failures.push(format!(
                    "{}: the PodDisruptionBudget also selects {}'s pods",
                    budget.origin(),
                    other.origin()
                ));
            }
        }
    }
}

/// A rollout must be able to replace the active replica. Only it is Ready; a new pod becomes
/// Ready only after the old active one stops; so an update that keeps an available pod until
/// a new one is available waits forever.
fn check_rollout(workload: &Object, replicas: i64, failures: &mut Vec<String>) {
    let spec = &workload.doc["spec"];
    let unavailable_enough = |value: Option<&Yaml>, default: &str| -> bool {
        let text = value
            .and_then(scalar_text)
            .unwrap_or_else(|| default.to_owned());
        match text.strip_suffix('%') {
            // Kubernetes rounds a percentage of maxUnavailable down.
            Some(percent) => percent
                .parse::<i64>()
                .is_ok_and(|p| replicas * p / 100 >= replicas),
            None => text.parse::<i64>().is_ok_and(|n| n >= replicas),
        }
    };
    let ok = match workload.kind() {
        "Deployment" => {
            str_at(spec, &["strategy", "type"]) == Some("Recreate")
                || unavailable_enough(
                    at(spec, &["strategy", "rollingUpdate", "maxUnavailable"]),
                    "25%",
                )
        }
        "StatefulSet" => {
            str_at(spec, &["updateStrategy", "type"]) == Some("OnDelete")
                || unavailable_enough(
                    at(spec, &["updateStrategy", "rollingUpdate", "maxUnavailable"]),
                    "1",
                )
        }
        other => {
            failures.push(format!(
                "{}: the relay runs in a {other}; expected a Deployment or StatefulSet",
                workload.origin()
            ));
            return;
        }
    };
    if !ok {
        failures.push(format!(
            "{}: the rollout strategy's maxUnavailable is below the replica count ({replicas}): \
             it waits for a new pod to become Ready before stopping the old active one, and a \
             standby never becomes Ready while that one holds the slot",
            workload.origin()
        ));
    }
}

/// The replicas on different nodes: a required anti-affinity term on the host name that
/// selects the replicas themselves.
fn check_anti_affinity(
    workload: &Object,
    labels: &BTreeMap<String, String>,
    failures: &mut Vec<String>,
) {
    let terms = list_at(
        &workload.doc,
        &[
            "spec",
            "template",
            "spec",
            "affinity",
            "podAntiAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ],
    );
    let separated = terms.iter().any(|term| {
        str_at(term, &["topologyKey"]) == Some("kubernetes.io/hostname")
            && selects(
                &string_map(at(term, &["labelSelector", "matchLabels"])),
                labels,
            )
    });
    if !separated {
        failures.push(format!(
            "{}: no required pod anti-affinity on kubernetes.io/hostname selecting the \
             replicas: both could land on one node",
            workload.origin()
        ));
    }
}

/// The setup Job prepares what `run` streams from.
fn check_setup(tailers: &[Tailer], failures: &mut Vec<String>) {
    let run = tailers.iter().find(|t| t.subcommand == "run");
    let setups: Vec<&Tailer> = tailers.iter().filter(|t| t.subcommand == "setup").collect();
    if setups.is_empty() {
        failures.push(format!("no Job runs `{TAILER} setup`"));
    }
    for setup in setups {
        if setup.workload.kind() != "Job" {
            failures.push(format!(
                "{}: `setup` is one-shot; run it in a Job",
                setup.origin
            ));
        }
        let Some(run) = run else { continue };
        if setup.settings.is_empty() || run.settings.is_empty() {
            continue; // Already reported.
        }
        for key in SHARED_SETTINGS {
            if setup.setting(key) != run.setting(key) {
                failures.push(format!(
                    "{}: {key} is {:?}, but `run` uses {:?}",
                    setup.origin,
                    setup.setting(key),
                    run.setting(key)
                ));
            }
        }
    }
}

/// Files the connection string names (CA, client certificate and key) must be in the container.
fn check_connection_files(kit: &Kit, tailers: &[Tailer], failures: &mut Vec<String>) {
    for tailer in tailers {
        let Some(postgres) = tailer.setting("postgres") else {
            continue;
        };
        for word in postgres.split_whitespace() {
            let Some((key, path)) = word.split_once('=') else {
                continue;
            };
            if PG_FILE_PARAMETERS.contains(&key) && path.starts_with('/') {
                if let Err(why) = mounted_file(kit, tailer.template, tailer.container, path) {
                    failures.push(format!("{}: {key}={path}: {why}", tailer.origin));
                }
            }
        }
    }
}

/// Non-root with a numeric user, read-only root, no capabilities, seccomp: for every container
/// of every pod (a container's securityContext overrides the pod's).
fn check_pod_security(workload: &Object, template: &Yaml, failures: &mut Vec<String>) {
    let pod = at(template, &["spec", "securityContext"]);
    let containers = list_at(template, &["spec", "initContainers"])
        .iter()
        .chain(list_at(template, &["spec", "containers"]));
    for container in containers {
        let origin = format!(
            "{}, container {}",
            workload.origin(),
            str_at(container, &["name"]).unwrap_or("?")
        );
        let own = at(container, &["securityContext"]);
        let either = |path: &[&str]| {
            own.and_then(|c| at(c, path))
                .or_else(|| pod.and_then(|p| at(p, path)))
        };
        if either(&["runAsNonRoot"]).and_then(Yaml::as_bool) != Some(true) {
            failures.push(format!("{origin}: runAsNonRoot is not true"));
        }
        match either(&["runAsUser"]) {
            Some(Yaml::Integer(uid)) if *uid > 0 => {}
            other => failures.push(format!(
                "{origin}: runAsUser {other:?} is not a numeric non-root user"
            )),
        }
        if !matches!(
            either(&["seccompProfile", "type"]).and_then(Yaml::as_str),
            Some("RuntimeDefault" | "Localhost")
        ) {
            failures.push(format!("{origin}: no seccomp profile (RuntimeDefault)"));
        }
        let own = own.unwrap_or(&Yaml::BadValue);
        if at(own, &["readOnlyRootFilesystem"]).and_then(Yaml::as_bool) != Some(true) {
            failures.push(format!("{origin}: readOnlyRootFilesystem is not true"));
        }
        if at(own, &["allowPrivilegeEscalation"]).and_then(Yaml::as_bool) != Some(false) {
            failures.push(format!("{origin}: allowPrivilegeEscalation is not false"));
        }
        if !strings(list_at(own, &["capabilities", "drop"])).contains(&"ALL".to_owned()) {
            failures.push(format!("{origin}: capabilities do not drop ALL"));
        }
    }
}

/// Images pinned: a digest, or the release's own tag (the flags were checked against this
/// release's --help); never `latest` or no tag.
fn check_image(workload: &Object, container: &Yaml, failures: &mut Vec<String>) {
    let origin = format!(
        "{}, container {}",
        workload.origin(),
        str_at(container, &["name"]).unwrap_or("?")
    );
    let Some(image) = str_at(container, &["image"]) else {
        failures.push(format!("{origin}: no image"));
        return;
    };
    check_image_ref(&origin, image, failures);
}

fn check_image_ref(origin: &str, image: &str, failures: &mut Vec<String>) {
    if image.contains("@sha256:") {
        return;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => failures.push(format!(
            "{origin}: image {image} has no tag (which means `latest`)"
        )),
        Some((_, "latest")) => failures.push(format!("{origin}: image {image} is `latest`")),
        Some((_, tag)) if tag != env!("CARGO_PKG_VERSION") => failures.push(format!(
            "{origin}: image {image} is not this release ({})",
            env!("CARGO_PKG_VERSION")
        )),
        Some(_) => {}
    }
}

/// Label and annotation values, `env` values and ConfigMap data must be strings: the API
/// server refuses `true` or `9187` there.
fn check_strings(kit: &Kit, failures: &mut Vec<String>) {
    for object in &kit.objects {
        let origin = object.origin();
        let mut maps = Vec::new();
        for what in ["labels", "annotations"] {
            maps.push((what, at(&object.doc, &["metadata", what])));
        }
        if matches!(object.kind(), "ConfigMap" | "Secret") {
            maps.push(("data", at(&object.doc, &["data"])));
            maps.push(("stringData", at(&object.doc, &["stringData"])));
        }
        if let Some(template) = object.pod_template() {
            for what in ["labels", "annotations"] {
                maps.push((what, at(template, &["metadata", what])));
            }
            for container in list_at(template, &["spec", "containers"]) {
                for var in list_at(container, &["env"]) {
                    if let Some(value) = at(var, &["value"]).filter(|v| v.as_str().is_none()) {
                        failures.push(format!(
                            "{origin}: env {:?} is {value:?}, not a string; quote it",
                            str_at(var, &["name"]).unwrap_or("?")
                        ));
                    }
                }
            }
        }
        for (what, map) in maps {
            let Some(hash) = map.and_then(Yaml::as_hash) else {
                continue;
            };
            for (key, value) in hash.iter().filter(|(_, v)| v.as_str().is_none()) {
                failures.push(format!(
                    "{origin}: {what} {key:?} is {value:?}, not a string; quote it"
                ));
            }
        }
    }
}

/// A ConfigMap is readable by anyone who can read the namespace's configuration: passwords
/// belong in the Secret.
fn check_no_secrets_in_config_maps(kit: &Kit, failures: &mut Vec<String>) {
    for config_map in kit.of_kind("ConfigMap") {
        for (key, text) in config_map.entries() {
            for line in text.lines() {
                let line = line.trim();
                if line.starts_with('#') {
                    continue;
                }
                let Some((name, value)) = line.split_once('=') else {
                    continue;
                };
                let name = name.to_ascii_lowercase();
                if name.contains("password")
                    || name.contains("secret")
                    || value.contains("password=")
                {
                    failures.push(format!(
                        "{}: {key} holds a secret ({}); put it in the Secret",
                        config_map.origin(),
                        name.trim()
                    ));
                }
            }
        }
    }
}

/// kustomization.yaml lists every manifest of its directory but the ones kept out on purpose,
/// and its `images:` entries rewrite an image the manifests use.
fn check_kustomization(kit: &Kit, failures: &mut Vec<String>) {
    let Some(kustomization) = kit.objects.iter().find(|o| o.kind() == "Kustomization") else {
        failures.push(format!("no kustomization.yaml in {DIR}"));
        return;
    };
    let listed: BTreeSet<String> = strings(list_at(&kustomization.doc, &["resources"]))
        .into_iter()
        .collect();
    let manifests: BTreeSet<&String> = kit
        .objects
        .iter()
        .filter(|o| o.kind() != "Kustomization" && !o.file.contains('/'))
        .map(|o| &o.file)
        .collect();
    for resource in &listed {
        if !kit.files.contains_key(resource) && !repo_root().join(DIR).join(resource).exists() {
            failures.push(format!(
                "kustomization.yaml lists {resource}, which is not here"
            ));
        }
    }
    for file in &manifests {
        let kept_out = NOT_IN_KUSTOMIZATION.iter().find(|(f, _)| f == file);
        match (listed.contains(*file), kept_out) {
            (false, None) => failures.push(format!(
                "kustomization.yaml does not list {file}: `kubectl apply -k` would skip it"
            )),
            (true, Some((_, why))) => failures.push(format!(
                "kustomization.yaml lists {file}, which stays out: {why}"
            )),
            _ => {}
        }
    }
    let used: BTreeSet<String> = kit
        .workloads()
        .filter(|(o, _)| listed.contains(&o.file))
        .flat_map(|(_, t)| list_at(t, &["spec", "containers"]))
        .filter_map(|c| str_at(c, &["image"]))
        .map(|image| {
            let image = image.split('@').next().unwrap_or(image);
            match image.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => name.to_owned(),
                _ => image.to_owned(),
            }
        })
        .collect();
    for entry in list_at(&kustomization.doc, &["images"]) {
        let name = str_at(entry, &["name"]).unwrap_or("");
        if !used.contains(name) {
            failures.push(format!(
                "kustomization.yaml: images entry {name} matches no image of its resources \
                 ({used:?}), so it changes nothing"
            ));
        }
        if let Some(tag) = at(entry, &["newTag"]).and_then(scalar_text) {
            if at(entry, &["digest"]).is_none() {
                let new_name = str_at(entry, &["newName"]).unwrap_or(name);
                check_image_ref("kustomization.yaml", &format!("{new_name}:{tag}"), failures);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}:\n  - {}",
        failures.join("\n  - ")
    );
}

#[test]
fn the_manifests_match_the_tailer_they_deploy() {
    assert_no_failures("deploy/kubernetes", &Kit::load().failures());
}

/// Broken copies of the files, and a word the failure must contain: each rule above can fail.
const BREAKAGES: &[(&str, &str, &str, &str)] = &[
    // Flags, variables and references against --help and the other manifests.
    (
        "deployment.yaml",
        "- --metrics-addr",
        "- --metrics-address",
        "`--metrics-address` is not a flag",
    ),
    (
        "deployment.yaml",
        "- name: OUTBOX_KAFKA_OPTIONS",
        "- name: OUTBOX_KAFKA_OPTS",
        "does not read OUTBOX_KAFKA_OPTS",
    ),
    (
        "deployment.yaml",
        "key: OUTBOX_KAFKA_OPTIONS",
        "key: KAFKA_OPTIONS",
        "refers to key KAFKA_OPTIONS",
    ),
    (
        "setup-job.yaml",
        "- name: OUTBOX_POSTGRES_PASSWORD",
        "- name: OUTBOX_KAFKA_BROKERS",
        "`outbox-tailer setup` does not read OUTBOX_KAFKA_BROKERS",
    ),
    (
        "setup-job.yaml",
        "            - /etc/outbox-tailer/outbox.toml\n",
        "",
        "`--config` needs a value",
    ),
    (
        "setup-job.yaml",
        "- setup\n",
        "- set-up\n",
        "not a subcommand",
    ),
    // The mounted file and what the settings come to.
    (
        "deployment.yaml",
        "mountPath: /etc/outbox-tailer\n",
        "mountPath: /etc/outbox\n",
        "--config /etc/outbox-tailer/outbox.toml: no volume",
    ),
    (
        "configmap.yaml",
        "slot = \"outbox_slot\"",
        "slot_name = \"outbox_slot\"",
        "unknown field `slot_name`",
    ),
    (
        "configmap.yaml",
        "shutdown_timeout_secs = 25",
        "shutdown_timeout_secs = \"25\"",
        "`outbox-tailer config` refuses",
    ),
    (
        "configmap.yaml",
        "sslrootcert=/etc/outbox-tailer/postgres-ca.pem",
        "sslrootcert=/etc/ssl/postgres-ca.pem",
        "sslrootcert=/etc/ssl/postgres-ca.pem: no volume",
    ),
    (
        "configmap.yaml",
        "shutdown_timeout_secs = 25",
        "shutdown_timeout_secs = 25\n    postgres_password = \"hunter2\"",
        "holds a secret",
    ),
    (
        "setup-job.yaml",
        "- /etc/outbox-tailer/outbox.toml\n",
        "- /etc/outbox-tailer/outbox.toml\n            - --slot\n            - other_slot\n",
        "slot is Some(\"other_slot\")",
    ),
    // The relay.
    (
        "deployment.yaml",
        "replicas: 2",
        "replicas: 3",
        "replicas is 3",
    ),
    (
        "deployment.yaml",
        "- 0.0.0.0:9187",
        "- 127.0.0.1:9187",
        "not reachable",
    ),
    (
        "deployment.yaml",
        "path: /readyz",
        "path: /ready",
        "readinessProbe asks Some(\"/ready\")",
    ),
    (
        "deployment.yaml",
        "path: /healthz",
        "path: /readyz",
        "livenessProbe asks Some(\"/readyz\")",
    ),
    (
        "deployment.yaml",
        "containerPort: 9187",
        "containerPort: 9188",
        "goes to port Some(9188)",
    ),
    (
        "deployment.yaml",
        "terminationGracePeriodSeconds: 35",
        "terminationGracePeriodSeconds: 28",
        "terminationGracePeriodSeconds 28",
    ),
    (
        "configmap.yaml",
        "shutdown_timeout_secs = 25",
        "shutdown_timeout_secs = 40",
        "shutdown deadline (40 s)",
    ),
    (
        "deployment.yaml",
        "maxUnavailable: \"100%\"",
        "maxUnavailable: 1",
        "maxUnavailable is below",
    ),
    (
        "deployment.yaml",
        "- topologyKey: kubernetes.io/hostname",
        "- topologyKey: kubernetes.io/os",
        "anti-affinity",
    ),
    (
        "deployment.yaml",
        "prometheus.io/scrape: \"true\"",
        "prometheus.io/scrape: true",
        "not a string",
    ),
    (
        "deployment.yaml",
        "prometheus.io/port: \"9187\"",
        "prometheus.io/port: \"9188\"",
        "prometheus.io/port",
    ),
    (
        "poddisruptionbudget.yaml",
        "      app.kubernetes.io/component: relay\n  #",
        "      app.kubernetes.io/component: tailer\n  #",
        "no PodDisruptionBudget selects",
    ),
    (
        "poddisruptionbudget.yaml",
        "minAvailable: 1",
        "minAvailable: 2",
        "minAvailable is not 1",
    ),
    (
        "setup-job.yaml",
        "        app.kubernetes.io/component: setup\n",
        "        app.kubernetes.io/component: relay\n",
        "also selects",
    ),
    // Every pod.
    (
        "deployment.yaml",
        "runAsNonRoot: true",
        "runAsNonRoot: false",
        "runAsNonRoot is not true",
    ),
    (
        "setup-job.yaml",
        "runAsUser: 10001",
        "runAsUser: \"10001\"",
        "not a numeric non-root user",
    ),
    (
        "deployment.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
        "readOnlyRootFilesystem",
    ),
    (
        "deployment.yaml",
        "drop: [\"ALL\"]",
        "drop: [\"NET_RAW\"]",
        "do not drop ALL",
    ),
    (
        "setup-job.yaml",
        "type: RuntimeDefault",
        "type: Unconfined",
        "seccomp",
    ),
    (
        "deployment.yaml",
        "outbox-tailer:0.1.0",
        "outbox-tailer:latest",
        "is `latest`",
    ),
    (
        "setup-job.yaml",
        "outbox-tailer:0.1.0",
        "outbox-tailer",
        "has no tag",
    ),
    // The kustomization.
    (
        "kustomization.yaml",
        "  - poddisruptionbudget.yaml\n",
        "",
        "does not list poddisruptionbudget.yaml",
    ),
    (
        "kustomization.yaml",
        "  - poddisruptionbudget.yaml\n",
        "  - poddisruptionbudget.yaml\n  - setup-job.yaml\n",
        "lists setup-job.yaml, which stays out",
    ),
    (
        "kustomization.yaml",
        "newTag: \"0.1.0\"",
        "newTag: latest",
        "is `latest`",
    ),
    (
        "kustomization.yaml",
        "- name: registry.example.com/outbox-tailer",
        "- name: outbox-tailer",
        "changes nothing",
    ),
];

#[test]
fn a_broken_copy_is_caught() {
    let kit = Kit::load();
    let mut missed = Vec::new();
    for (file, from, to, expected) in BREAKAGES {
        let failures = kit.broken(file, from, to).failures();
        if !failures.iter().any(|f| f.contains(expected)) {
            missed.push(format!(
                "{file}: {from:?} → {to:?} should fail with {expected:?}; got {failures:#?}"
            ));
        }
    }
    assert_no_failures("breakages the rules did not catch", &missed);
}

#[test]
fn help_is_read_as_clap_prints_it() {
    let run = help("run").expect("run --help");
    assert_eq!(run.flags.get("-X"), Some(&true));
    assert_eq!(run.flags.get("--kafka-option"), Some(&true));
    assert_eq!(run.flags.get("--create-slot"), Some(&false));
    assert_eq!(run.flags.get("--exactly-once"), Some(&false));
    assert!(
        !run.flags.contains_key("--exactly-once:"),
        "a description line read as a flag"
    );
    assert!(run.env.contains("OUTBOX_POSTGRES_PASSWORD"));
    assert!(run.env.contains("OUTBOX_METRICS_ADDR"));
    let setup = help("setup").expect("setup --help");
    assert!(setup.env.contains("OUTBOX_SLOT"));
    assert!(!setup.env.contains("OUTBOX_KAFKA_OPTIONS"));
    assert!(help("no-such-command").is_none());
}
