//! A timestamp column's text (`--timestamp-column`, Debezium's `table.field.event.timestamp`)
//! as milliseconds since the Unix epoch: PostgreSQL's ISO output of `timestamp` (taken as
//! UTC, as Debezium takes it) and `timestamptz` (with its offset), or an integer of
//! milliseconds.

use chrono::{DateTime, NaiveDateTime};

/// `None` for text that is none of these (`infinity`, a BC date, another DateStyle).
pub fn millis(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(t.timestamp_millis());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::millis;

    #[test]
    fn postgres_outputs_and_integers() {
        assert_eq!(millis("1556890294484"), Some(1_556_890_294_484));
        assert_eq!(millis("2019-05-03 13:31:34.484"), Some(1_556_890_294_484));
        assert_eq!(
            millis("2019-05-03 13:31:34.484999"),
            Some(1_556_890_294_484)
        );
        assert_eq!(
            millis("2019-05-03 15:31:34.484+02"),
            Some(1_556_890_294_484)
        );
        assert_eq!(
            millis("2019-05-03 19:01:34.484+05:30"),
            Some(1_556_890_294_484)
        );
        assert_eq!(millis("2019-05-03 13:31:34+00"), Some(1_556_890_294_000));
        assert_eq!(millis("infinity"), None);
        assert_eq!(millis("05/03/2019"), None);
    }
}
