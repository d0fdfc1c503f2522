//! `outbox-bench`: one command, its own PostgreSQL and broker, numbers into docs/.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = outbox_bench::BenchOptions::parse();
    if let Some(json) = &options.render {
        let report: outbox_bench::Report = serde_json::from_str(&std::fs::read_to_string(json)?)?;
        let dir = json.parent().unwrap_or(std::path::Path::new("."));
        report.write(dir)?;
        println!("{}", report.markdown());
        return Ok(());
    }
    let report = outbox_bench::run(&options).await?;
    println!("{}", report.markdown());
    if let Some(dir) = &options.out {
        report.write(dir)?;
        println!("written to {}", dir.display());
    }
    Ok(())
}
