//! PostgreSQL timestamps: signed microseconds since 2000-01-01 00:00:00 UTC.
//!
//! Commit and prepare times in pgoutput are in this form. Conversions to the Unix epoch
//! saturate instead of overflowing, and the conversion to [`SystemTime`] is checked, so no
//! input value can panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A PostgreSQL `TimestampTz` as sent on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PgTimestamp(i64);

impl PgTimestamp {
    /// Wraps microseconds since 2000-01-01 UTC.
    pub const fn from_pg_micros(micros: i64) -> Self {
        PgTimestamp(micros)
    }

    pub const fn from_unix_micros(micros: i64) -> Self {
        PgTimestamp(micros.saturating_sub(PG_EPOCH_UNIX_MICROS))
    }

    /// Microseconds since 2000-01-01 UTC, exactly as on the wire.
    pub const fn pg_micros(self) -> i64 {
        self.0
    }

    pub const fn unix_micros(self) -> i64 {
        self.0.saturating_add(PG_EPOCH_UNIX_MICROS)
    }

    /// Milliseconds since the Unix epoch, rounded towards negative infinity.
    pub const fn unix_millis(self) -> i64 {
        self.unix_micros().div_euclid(1000)
    }

    /// `None` only when the instant is outside what the platform's `SystemTime` can hold.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let micros = self.unix_micros();
        let magnitude = Duration::from_micros(micros.unsigned_abs());
        if micros >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// Sub-microsecond precision is truncated; instants beyond ±292,000 years saturate.
    pub fn from_system_time(time: SystemTime) -> Self {
        let clamp = |micros: u128| i64::try_from(micros).unwrap_or(i64::MAX);
        let unix_micros = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => clamp(after.as_micros()),
            Err(before) => clamp(before.duration().as_micros()).saturating_neg(),
        };
        Self::from_unix_micros(unix_micros)
    }
}

impl From<PgTimestamp> for Option<SystemTime> {
    fn from(ts: PgTimestamp) -> Self {
        ts.to_system_time()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_epoch_is_2000_01_01() {
        assert_eq!(
            PgTimestamp::from_pg_micros(0).unix_micros(),
            946_684_800_000_000
        );
        assert_eq!(
            PgTimestamp::from_pg_micros(0).unix_millis(),
            946_684_800_000
        );
        let st = PgTimestamp::from_pg_micros(0).to_system_time().unwrap();
        assert_eq!(
            st.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            946_684_800
        );
    }

    #[test]
    fn before_unix_epoch_and_extremes_do_not_panic() {
        let early = PgTimestamp::from_unix_micros(-1_500);
        assert_eq!(early.unix_millis(), -2);
        assert_eq!(
            UNIX_EPOCH
                .duration_since(early.to_system_time().unwrap())
                .unwrap(),
            Duration::from_micros(1_500)
        );
        for raw in [i64::MIN, i64::MAX] {
            let ts = PgTimestamp::from_pg_micros(raw);
            let _ = ts.to_system_time();
            let _ = ts.unix_millis();
        }
    }

    #[test]
    fn system_time_round_trip() {
        let now = SystemTime::now();
        let ts = PgTimestamp::from_system_time(now);
        let back = ts.to_system_time().unwrap();
        let diff = now.duration_since(back).unwrap();
        assert!(diff < Duration::from_micros(1));
    }
}
