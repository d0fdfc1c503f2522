//! The production kit against a live tailer: every metric the Grafana dashboard and the
//! Prometheus alert rules in `deploy/` query is in a real `/metrics`, along with `process_*`,
//! `build_info` and every `errors_total` kind at zero; `/healthz` answers 200 while the relay
//! loop turns and 503 while it is wedged.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use outbox_testkit::{free_port, PgConfig, TansuStorage};
use serde_json::{json, Value};
use support::*;

const TOPIC: &str = "outbox.event.order";

/// Series Prometheus makes up itself rather than scraping.
const SYNTHETIC: &[&str] = &["up"];

/// PromQL words that look like identifiers but name no metric: aggregations, functions used
/// without parentheses right after them, binary and grouping keywords, literals.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Keywords followed by a parenthesised list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression reads: identifiers that are not functions, keywords, label names, strings, durations or
/// Grafana variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut labels_next = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' || c == '[' || (c == '(' && labels_next) {
            let close = match c {
                '{' => '}',
                '[' => ']',
                _ => ')',
            };
            labels_next = false;
            i += 1;
            while i < chars.len() && chars[i] != close {
                i = match chars[i] {
                    '"' | '\'' | '`' => skip_string(&chars, i),
                    _ => i + 1,
                };
            }
            i += 1;
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A Grafana variable, a number or a duration.
            i += 1;
            while i < chars.len() && (ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if GROUPING.contains(&word.as_str()) {
                labels_next = true;
            } else if next != Some(&'(') && !PROMQL_WORDS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The index after the string literal that starts at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

fn repo_file(path: &str) -> anyhow::Result<String> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).map_err(|e| anyhow::anyhow!("{}: {e}", full.display()))
}

/// Every query of the dashboard: panel targets (rows' nested panels too) and variables.
fn dashboard_queries() -> anyhow::Result<Vec<String>> {
    let dashboard: Value = serde_json::from_str(&repo_file("deploy/grafana/outbox-tailer.json")?)?;
    let mut exprs = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                exprs.push(expr.to_owned());
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] == "query" {
            // `label_values(<series selector>, <label>)`: the selector is the PromQL.
            if let Some(query) = variable["query"]["query"].as_str() {
                let selector = query
                    .strip_prefix("label_values(")
                    .and_then(|q| q.rsplit_once(','))
                    .map_or(query, |(selector, _)| selector);
                exprs.push(selector.to_owned());
            }
        }
    }
    anyhow::ensure!(exprs.len() > 20, "only {} dashboard queries", exprs.len());
    Ok(exprs)
}

/// The values of `key:` in a YAML file written like deploy/prometheus/alerts.yml: on the same
/// line (quoted or not) or as a `|`/`>` block below it.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut values = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let item = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let Some(value) = item.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let indent = line.len() - item.len();
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            values.push(block.join(" "));
        } else {
            values.push(value.trim_matches(|c| c == '"' || c == '\'').to_owned());
        }
    }
    values
}

fn alert_exprs() -> anyhow::Result<Vec<String>> {
    let exprs = yaml_values(&repo_file("deploy/prometheus/alerts.yml")?, "expr");
    anyhow::ensure!(exprs.len() >= 6, "only {} alert rules", exprs.len());
    Ok(exprs)
}

/// Every metric the kit queries, with where it is used.
fn kit_metric_names() -> anyhow::Result<Vec<(String, &'static str)>> {
    let mut names = BTreeSet::new();
    for expr in dashboard_queries()? {
        names.extend(metric_names(&expr).into_iter().map(|n| (n, "dashboard")));
    }
    for expr in alert_exprs()? {
        names.extend(metric_names(&expr).into_iter().map(|n| (n, "alerts")));
    }
    Ok(names.into_iter().collect())
}

/// The sample names of a text exposition (`_bucket`, `_sum`, `_count` for histograms).
fn sample_names(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect()
}

/// Write `n` single-event transactions; returns the event ids in commit order.
async fn write_events(env: &Env, n: usize) -> anyhow::Result<Vec<String>> {
    let mut client = env.db.connect().await?;
    let mut ids = Vec::new();
    for i in 0..n {
        let tx = client.transaction().await?;
        let id = emit(&tx, "order", "a", "OrderCreated", &json!({"n": i})).await?;
        tx.commit().await?;
        ids.push(id.to_string());
    }
    Ok(ids)
}

#[test]
fn promql_metric_names_skip_functions_labels_and_keywords() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, instance) (rate(a_seconds_bucket{job=~"$job", x="}[("}[$__rate_interval])))"#
        ),
        ["a_seconds_bucket"]
    );
    assert_eq!(
        names("b >= 0 and b < 4294967296 or on(instance) c_total offset 5m"),
        ["b", "c_total"]
    );
    assert_eq!(
        names("sum(x_total) without (kind) / ignoring (kind) group_left y"),
        ["x_total", "y"]
    );
    assert_eq!(
        names(r#"absent(up{job="outbox-tailer"}) == bool 1"#),
        ["up"]
    );
    assert_eq!(names("deriv(lsn[1m]) * 1e3"), ["lsn"]);
}

#[test]
fn yaml_exprs_are_read_inline_and_as_blocks() {
    let text = "rules:\n  - expr: a > 1\n    for: 1m\n  - expr: >-\n      b\n      and c\n    labels: {}\n  - expr: \"d == 0\"\n";
    assert_eq!(yaml_values(text, "expr"), ["a > 1", "b and c", "d == 0"]);
}

/// The dashboard and the alerts cover what an operator watches (and the parser finds it).
#[test]
fn the_kit_covers_throughput_latency_slot_errors_librdkafka_and_the_process() -> anyhow::Result<()>
{
    let names: BTreeSet<String> = kit_metric_names()?.into_iter().map(|(n, _)| n).collect();
    for name in [
        "outbox_tailer_events_published_total",
        "outbox_tailer_published_bytes_total",
        "outbox_tailer_publish_latency_seconds_bucket",
        "outbox_tailer_slot_lag_bytes",
        "outbox_tailer_slot_safe_wal_size_bytes",
        "outbox_tailer_confirmed_lsn",
        "outbox_tailer_errors_total",
        "outbox_tailer_in_flight_events",
        "outbox_tailer_in_flight_bytes",
        "outbox_tailer_kafka_broker_rtt_p99_seconds",
        "outbox_tailer_kafka_producer_queue_messages",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "outbox_tailer_build_info",
        "up",
    ] {
        assert!(names.contains(name), "{name} not queried; found {names:?}");
    }
    Ok(())
}

/// Every runbook link (alerts and dashboard) points at a heading of docs/operations.md.
#[test]
fn runbooks_point_at_sections_of_operations_md() -> anyhow::Result<()> {
    let slug = |heading: &str| -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    };
    let operations = repo_file("docs/operations.md")?;
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(slug)
        .collect();
    let alerts = repo_file("deploy/prometheus/alerts.yml")?;
    let runbooks = yaml_values(&alerts, "runbook_url");
    assert_eq!(
        runbooks.len(),
        yaml_values(&alerts, "alert").len(),
        "every alert has a runbook"
    );
    let dashboard = repo_file("deploy/grafana/outbox-tailer.json")?;
    let links = dashboard
        .split('"')
        .filter(|s| s.contains("docs/operations.md#"))
        .map(str::to_owned);
    for url in runbooks.into_iter().chain(links) {
        let (_, anchor) = url.split_once("docs/operations.md#").expect("an anchor");
        assert!(
            anchors.contains(anchor),
            "{url}: no such section in docs/operations.md ({anchors:?})"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_dashboard_and_the_alerts_is_in_a_live_scrape() -> anyhow::Result<()> {
    let wanted = kit_metric_names()?;
    let env = env().await?;
    env.setup().await?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let tailer = spawn_in_process(env.config(&[
        "--metrics-addr",
        &addr,
        "--slot-check-interval-ms",
        "200",
        "-X",
        "statistics.interval.ms=200",
    ]));
    wait_until(Duration::from_secs(30), "/readyz to answer 200", || async {
        Ok(http_get(&addr, "/readyz")
            .await
            .is_ok_and(|(code, _)| code == 200))
    })
    .await?;
    assert_eq!(http_get(&addr, "/healthz").await?, (200, "ok\n".into()));

    let ids = write_events(&env, 10).await?;
    env.consume(TOPIC, ids.len()).await?;
    // librdkafka reports per broker only once it has talked to one: wait for the whole kit.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let scraped = loop {
        poll.tick().await;
        let text = scrape(&addr).await?;
        let names = sample_names(&text);
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(n, _)| !names.contains(n.as_str()) && !SYNTHETIC.contains(&n.as_str()))
            .collect();
        let acked = sample(&text, "outbox_tailer_events_acked_total") == Some(10.0);
        if missing.is_empty() && acked {
            break text;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not in /metrics after 60 s (name, used by): {missing:?}\n{text}"
        );
    };

    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(
            sample(&scraped, name).is_some(),
            "{name} missing:\n{scraped}"
        );
    }
    // The e2e crate shares the workspace's version with the tailer.
    let version = format!(
        "outbox_tailer_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(scraped.contains(&version), "{version} missing:\n{scraped}");
    assert!(outbox_tailer::metrics::ERROR_KINDS.contains(&"delivery"));
    for kind in outbox_tailer::metrics::ERROR_KINDS {
        let line = format!("outbox_tailer_errors_total{{kind=\"{kind}\"}} 0");
        assert!(scraped.contains(&line), "{line} missing:\n{scraped}");
    }
    assert!(
        sample(&scraped, "outbox_tailer_published_bytes_total").is_some_and(|b| b > 0.0),
        "renamed from outbox_tailer_bytes_published_total"
    );
    assert!(!scraped.contains("outbox_tailer_bytes_published_total"));
    assert!(
        sample(&scraped, "outbox_tailer_kafka_transmitted_messages_total")
            .is_some_and(|m| m >= 10.0),
        "librdkafka counted what it sent:\n{scraped}"
    );
    assert_eq!(http_get(&addr, "/healthz").await?.0, 200);
    tailer.stop().await?;
    Ok(())
}

/// A hand-over that cannot finish wedges the loop for real: librdkafka's queue holds one
/// record (`-X queue.buffering.max.messages=1`) and the broker is gone, so the next record
/// waits inside the hand-over and the loop stops turning. `--status-interval-ms 30` makes the
/// limit its floor, 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_503_while_the_loop_is_wedged_and_200_once_it_turns_again(
) -> anyhow::Result<()> {
    let mut env = env_with(PgConfig::default(), TansuStorage::Sqlite).await?;
    env.setup().await?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let tailer = spawn_in_process(env.config(&[
        "--metrics-addr",
        &addr,
        "--status-interval-ms",
        "30",
        "-X",
        "queue.buffering.max.messages=1",
    ]));
    // The topic and its partitions' tails are known before the broker goes away.
    let mut ids = write_events(&env, 1).await?;
    env.consume(TOPIC, ids.len()).await?;
    wait_until(Duration::from_secs(30), "/readyz to answer 200", || async {
        Ok(http_get(&addr, "/readyz")
            .await
            .is_ok_and(|(code, _)| code == 200))
    })
    .await?;
    // Idle for longer than the limit: still alive.
    let idle_until = Instant::now() + Duration::from_secs(3);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < idle_until {
        poll.tick().await;
        assert_eq!(http_get(&addr, "/healthz").await?.0, 200, "idle is alive");
    }

    env.broker.stop();
    ids.extend(write_events(&env, 3).await?);
    let deadline = Instant::now() + Duration::from_secs(60);
    let reason = loop {
        poll.tick().await;
        let (code, body) = http_get(&addr, "/healthz").await?;
        if code == 503 {
            break body;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "/healthz still {code} 60 s after the loop got stuck"
        );
    };
    assert!(
        reason.starts_with("wedged: the relay loop has not turned for"),
        "{reason}"
    );
    assert!(reason.contains("limit 2s"), "{reason}");
    scrape(&addr).await?; // the endpoint itself is not wedged
    assert!(
        !tailer.handle.is_finished(),
        "a wedge does not stop the tailer"
    );

    tokio::task::block_in_place(|| env.broker.start_again())?;
    wait_until(
        Duration::from_secs(120),
        "/healthz to answer 200 again",
        || async { Ok(http_get(&addr, "/healthz").await?.0 == 200) },
    )
    .await?;
    let records = env.consume(TOPIC, ids.len()).await?;
    let got: BTreeSet<&str> = records.iter().filter_map(|r| r.header("id")).collect();
    let want: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(got, want, "everything arrives once the loop turns again");
    tailer.stop().await?;
    Ok(())
}
