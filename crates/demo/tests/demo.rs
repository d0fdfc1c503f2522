//! The README's first command, run as a library against both brokers it can pick.

use outbox_demo::{BrokerChoice, DemoOptions};

async fn demo(broker: BrokerChoice) -> anyhow::Result<(outbox_demo::DemoSummary, String)> {
    let mut out = Vec::new();
    let options = DemoOptions { orders: 3, broker };
    let summary = outbox_demo::run(&options, std::future::pending(), &mut out).await?;
    Ok((summary, String::from_utf8(out)?))
}

fn assert_shows_the_pattern(summary: outbox_demo::DemoSummary, out: &str) {
    assert_eq!(summary.events_printed, 3, "{out}");
    assert_eq!(out.matches("type=OrderCreated").count(), 3, "{out}");
    assert!(
        out.contains("failed after its insert (rolled back)"),
        "{out}"
    );
    assert!(
        out.contains("tailer stopped cleanly: 3 events published and acked"),
        "{out}"
    );
    assert!(
        !out.contains("mallory"),
        "the rolled-back order must not produce an event:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_on_the_mock_cluster() -> anyhow::Result<()> {
    let (summary, out) = demo(BrokerChoice::Mock).await?;
    assert!(out.contains("mock cluster"), "{out}");
    assert_shows_the_pattern(summary, &out);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_on_tansu() -> anyhow::Result<()> {
    let (summary, out) = demo(BrokerChoice::Tansu).await?;
    assert!(out.contains("tansu"), "{out}");
    assert_shows_the_pattern(summary, &out);
    Ok(())
}
