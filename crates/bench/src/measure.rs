//! What the relays cost: CPU time of the PostgreSQL processes, WAL written, the relay's peak RSS.

use std::path::Path;

/// User+system CPU time, in milliseconds, of the postmaster and all its children, living or
/// reaped.
pub fn postgres_cpu_ms(data_dir: &Path) -> anyhow::Result<u64> {
    let pidfile = std::fs::read_to_string(data_dir.join("postmaster.pid"))?;
    let postmaster: u32 = pidfile.lines().next().unwrap_or_default().trim().parse()?;
    let ticks_per_sec = 100; // Linux USER_HZ
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state(0) ppid(1) … utime(11) stime(12)
        let ppid: u32 = fields.get(1).and_then(|f| f.parse().ok()).unwrap_or(0);
        if pid != postmaster && ppid != postmaster {
            continue;
        }
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        total += field(11) + field(12);
        if pid == postmaster {
            // Children that already exited (e.g. a walsender whose client left) are counted
            // in the postmaster's cutime/cstime once reaped.
            total += field(13) + field(14);
        }
    }
    Ok(total * 1000 / ticks_per_sec)
}

/// User+system CPU time of one process, in milliseconds (`self` for the harness itself).
pub fn process_cpu_ms(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10) // Linux USER_HZ = 100
}

/// Peak resident set size of a process (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
