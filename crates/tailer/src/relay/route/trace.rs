//! Trace context across the relay: the writer's W3C trace context, stored in the outbox row,
//! becomes the record's `traceparent` and `tracestate` headers, so an OpenTelemetry consumer
//! continues the writer's trace.
//!
//! Two places hold it: Debezium's `tracingspancontext` column (a Java properties text as
//! `Properties.store` writes it: a `#` date comment, then `traceparent=…` and `tracestate=…`
//! lines with `=`/`:` escaped), and plain `traceparent`/`tracestate` columns. A value that is
//! not a valid W3C `traceparent` is dropped (with a warning naming the event, never the value):
//! a bad trace context must not stop the outbox.

use bytes::Bytes;

use crate::config::java_properties;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The `traceparent` and `tracestate` found in a properties text.
pub fn from_properties(text: &str) -> (Option<String>, Option<String>) {
    let mut parent = None;
    let mut state = None;
    for (key, value) in java_properties::parse(text) {
        match key.as_str() {
            TRACEPARENT => parent = Some(value),
            TRACESTATE => state = Some(value),
            _ => {}
        }
    }
    (parent, state)
}

/// The headers for a trace context, or none when `traceparent` is missing or malformed.
pub fn headers(parent: Option<String>, state: Option<String>) -> Option<Vec<(String, Bytes)>> {
    let parent = parent.filter(|p| valid_traceparent(p))?;
    let mut out = vec![(TRACEPARENT.to_owned(), Bytes::from(parent))];
    if let Some(state) = state.filter(|s| !s.trim().is_empty()) {
        out.push((TRACESTATE.to_owned(), Bytes::from(state)));
    }
    Some(out)
}

/// `version-traceid-parentid-flags`: 2, 32, 16, 2 lower-case hex digits; neither id all zeros;
/// version `ff` is invalid.
pub fn valid_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.trim().split('-').collect();
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() >= 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && (parts[0] != "00" || parts.len() == 4)
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn reads_what_java_properties_store_writes() {
        let text = format!(
            "#Sat Dec 05 03:14:44 UTC 2026\ntraceparent={PARENT}\ntracestate=congo\\=t61rcWkgMzE,rojo\\=00f067aa0ba902b7\n"
        );
        let (parent, state) = from_properties(&text);
        assert_eq!(parent.as_deref(), Some(PARENT));
        assert_eq!(
            state.as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
    }

    #[test]
    fn malformed_traceparents_give_no_headers() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        ] {
            assert!(headers(Some(bad.into()), None).is_none(), "{bad:?}");
        }
        let ok = headers(Some(PARENT.into()), Some(" ".into())).unwrap();
        assert_eq!(ok.len(), 1, "a blank tracestate is not sent");
    }
}
