//! `outbox-bench`: one command, its own PostgreSQL and broker, numbers into docs/.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = outbox_bench::BenchOptions::parse();
    let report = outbox_bench::run(&options).await?;
    println!("{}", report.markdown());
    if let Some(dir) = &options.out {
        report.write(dir)?;
        println!("written to {}", dir.display());
    }
    Ok(())
}
