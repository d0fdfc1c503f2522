//! The polling relay against real PostgreSQL and tansu.

mod support;

use std::time::Duration;

use clap::Parser;
use outbox_tailer::config::PollConfig;
use outbox_tailer::config::{Command, CommandLine};
use serde_json::json;
use support::*;
use tokio::sync::oneshot;

/// Start `outbox-tailer poll` in-process with `flags`; stop it through the returned sender.
fn spawn_poll(
    env: &Env,
    flags: &[&str],
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<outbox_tailer::Stats, outbox_tailer::TailerError>>,
) {
    let mut argv = vec!["outbox-tailer".to_string(), "poll".into()];
    argv.extend(env.run_args(&[]).into_iter().skip(1));
    argv.extend(flags.iter().map(|s| s.to_string()));
    let Command::Poll(args) = CommandLine::try_parse_from(argv).unwrap().command else {
        panic!("not a poll command");
    };
    let (config, poll) = args.resolve().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(outbox_tailer::poll::poll(config, poll, async move {
        let _ = rx.await;
    }));
    (tx, handle)
}

#[test]
fn defaults_are_the_classic_example() {
    let argv = ["outbox-tailer", "poll"];
    let Command::Poll(args) = CommandLine::try_parse_from(argv).unwrap().command else {
        panic!("not a poll command");
    };
    let (_, p) = args.resolve().unwrap();
    assert_eq!(
        (p.interval, p.batch, p.drain),
        (
            PollConfig::CLASSIC.interval,
            PollConfig::CLASSIC.batch,
            false
        )
    );
    assert_eq!(p.interval, Duration::from_secs(2));
    assert_eq!(p.batch, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_publishes_every_row_in_insert_order_and_marks_it() -> anyhow::Result<()> {
    let env = env().await?;
    let mut client = env.db.connect().await?;
    let mut ids = Vec::new();
    for i in 0..25 {
        let tx = client.transaction().await?;
        ids.push(
            emit(
                &tx,
                "order",
                &format!("p-{}", i % 4),
                "Polled",
                &json!({"i": i}),
            )
            .await?,
        );
        tx.commit().await?;
    }
    let tx = client.transaction().await?;
    emit(&tx, "order", "p-0", "RolledBack", &json!({})).await?;
    tx.rollback().await?;

    let (stop, handle) = spawn_poll(&env, &["--interval-ms", "50", "--batch", "10"]);
    let records = env.consume("outbox.event.order", 25).await?;
    let got: Vec<String> = records
        .iter()
        .map(|r| r.header("id").unwrap().to_owned())
        .collect();
    let want: Vec<String> = ids.iter().map(|u| u.to_string()).collect();
    assert_eq!(got, want, "insert order on one partition");
    assert!(
        records.iter().all(|r| r.header("outbox-lsn").is_none()),
        "a polled row has no WAL position"
    );
    wait_until(
        Duration::from_secs(30),
        "every row marked published",
        || async {
            let n: i64 = env
                .client
                .query_one(
                    "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                    &[],
                )
                .await?
                .get(0);
            Ok(n == 0)
        },
    )
    .await?;
    let _ = stop.send(());
    let stats = handle.await??;
    assert_eq!(stats.events_published, 25);
    assert_eq!(stats.events_acked, 25);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_in_delete_mode_empties_the_table() -> anyhow::Result<()> {
    let env = env().await?;
    let mut client = env.db.connect().await?;
    let tx = client.transaction().await?;
    for i in 0..30 {
        emit(
            &tx,
            "invoice",
            &format!("d-{}", i % 3),
            "Deleted",
            &json!({"i": i}),
        )
        .await?;
    }
    tx.commit().await?;
    let (stop, handle) = spawn_poll(
        &env,
        &[
            "--interval-ms",
            "1000",
            "--batch",
            "8",
            "--drain",
            "--after",
            "delete",
        ],
    );
    env.consume("outbox.event.invoice", 30).await?;
    wait_until(
        Duration::from_secs(30),
        "the outbox to be empty",
        || async {
            let n: i64 = env
                .client
                .query_one("SELECT count(*) FROM outbox", &[])
                .await?
                .get(0);
            Ok(n == 0)
        },
    )
    .await?;
    let _ = stop.send(());
    let stats = handle.await??;
    assert_eq!(stats.events_published, 30);
    Ok(())
}
