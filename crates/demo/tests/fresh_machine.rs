//! The README's first command on a machine without PostgreSQL: the demo installs a server into
//! the per-machine cache itself and runs. Its own test binary: it changes the environment the
//! testkit reads (no system servers, an empty cache), which other tests must not see.

use outbox_demo::{BrokerChoice, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_installs_postgres_when_the_machine_has_none() -> anyhow::Result<()> {
    let cache = tempfile::tempdir()?;
    // Servers run as `postgres` under root: it must traverse the cache.
    std::fs::set_permissions(
        cache.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    // Set before anything in this test binary reads the environment; it holds only this test.
    std::env::set_var(outbox_testkit::IGNORE_SYSTEM_ENV, "1");
    std::env::set_var("OUTBOX_PG_CACHE", cache.path());
    let mut out = Vec::new();
    let options = DemoOptions {
        orders: 2,
        broker: BrokerChoice::Mock,
    };
    let summary = outbox_demo::run(&options, std::future::pending(), &mut out).await?;
    let out = String::from_utf8(out)?;
    assert!(
        out.contains("no PostgreSQL server on this machine: installed PostgreSQL 17"),
        "{out}"
    );
    assert!(
        out.contains(&cache.path().join("17").display().to_string()),
        "the server came from the cache: {out}"
    );
    assert_eq!(summary.events_printed, 2, "{out}");
    Ok(())
}
