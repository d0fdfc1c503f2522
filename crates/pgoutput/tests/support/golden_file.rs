//! The golden file format, shared by `tests/golden.rs` (which decodes the checked-in files) and
//! the workspace's `tests/golden_capture.rs` (which writes them from a live PostgreSQL).
//!
//! One file per scenario, `crates/pgoutput/tests/golden/<scenario>.txt`: `#` comment lines,
//! then one captured message per line, `<lsn> <xid> <hex bytes>`, in the order the slot
//! returned them (`pg_logical_slot_peek_binary_changes`).

use pgoutput::Bytes;

/// One row of `pg_logical_slot_peek_binary_changes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub lsn: String,
    pub xid: u32,
    pub data: Bytes,
}

pub fn render(header: &[String], messages: &[Captured]) -> String {
    let mut out = String::new();
    for line in header {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    for m in messages {
        out.push_str(&format!("{} {} ", m.lsn, m.xid));
        for b in m.data.iter() {
            out.push_str(&format!("{b:02x}"));
        }
        out.push('\n');
    }
    out
}

pub fn parse(text: &str) -> Result<Vec<Captured>, String> {
    let mut messages = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}", n + 1);
        let mut parts = line.split(' ');
        let (Some(lsn), Some(xid), Some(hex), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected `<lsn> <xid> <hex>`"));
        };
        let xid = xid.parse().map_err(|_| bad("xid is not a number"))?;
        if hex.len() % 2 != 0 {
            return Err(bad("odd number of hex digits"));
        }
        let data = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad("invalid hex"))?;
        messages.push(Captured {
            lsn: lsn.to_owned(),
            xid,
            data: Bytes::from(data),
        });
    }
    Ok(messages)
}
