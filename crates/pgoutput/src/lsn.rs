//! Log sequence numbers: byte positions in PostgreSQL's write-ahead log.
//!
//! An [`Lsn`] is a plain `u64`; PostgreSQL prints it as two upper-case hex halves `HI/LO`
//! (`0/16B3748`). Ordering is numeric, and the distance between two LSNs is a number of WAL
//! bytes, which is what replication lag is measured in. No operation here can panic:
//! arithmetic saturates or is checked.

use std::fmt;
use std::str::FromStr;

/// A position in the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(u64);

impl Lsn {
    /// `0/0`: PostgreSQL's `InvalidXLogRecPtr`, also "start from the slot's position".
    pub const ZERO: Lsn = Lsn(0);

    pub const fn new(value: u64) -> Self {
        Lsn(value)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// WAL bytes from `earlier` to `self`; zero if `earlier` is not actually earlier.
    pub const fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub const fn checked_add(self, bytes: u64) -> Option<Lsn> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(Lsn(v)),
            None => None,
        }
    }

    pub const fn saturating_add(self, bytes: u64) -> Lsn {
        Lsn(self.0.saturating_add(bytes))
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Self {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> Self {
        lsn.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The text was not of PostgreSQL's `HI/LO` form (1–8 hex digits on each side of one `/`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid LSN {input:?}: expected two groups of 1-8 hex digits separated by '/', like 0/16B3748"
)]
pub struct ParseLsnError {
    input: String,
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let half = |part: &str| {
            let hex_digits =
                !part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_hexdigit());
            hex_digits
                .then(|| u32::from_str_radix(part, 16).ok())
                .flatten()
        };
        let error = || ParseLsnError {
            input: s.to_owned(),
        };
        let (hi, lo) = s.split_once('/').ok_or_else(error)?;
        let hi = half(hi).ok_or_else(error)?;
        let lo = half(lo).ok_or_else(error)?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_postgres() {
        assert_eq!(Lsn::new(0x16B3748).to_string(), "0/16B3748");
        assert_eq!(Lsn::new(0x1_0000_0000).to_string(), "1/0");
        assert_eq!(Lsn::ZERO.to_string(), "0/0");
        assert_eq!(Lsn::new(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parses_both_cases_and_round_trips() {
        assert_eq!("0/16b3748".parse::<Lsn>().unwrap(), Lsn::new(0x16B3748));
        assert_eq!("A/0".parse::<Lsn>().unwrap(), Lsn::new(0xA_0000_0000));
        for v in [0, 1, 0x16B3748, 0xFFFF_FFFF, 0x1_0000_0000, u64::MAX] {
            assert_eq!(Lsn::new(v).to_string().parse::<Lsn>().unwrap(), Lsn::new(v));
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/0/0",
            "g/0",
            "0/123456789",
            "+1/0",
            " 0/0",
            "0/-1",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert!(err.to_string().contains("invalid LSN"), "{bad}: {err}");
        }
    }

    #[test]
    fn lag_in_bytes_saturates() {
        let a = Lsn::new(100);
        let b = Lsn::new(250);
        assert_eq!(b.bytes_since(a), 150);
        assert_eq!(a.bytes_since(b), 0);
        assert!(a < b);
        assert_eq!(Lsn::new(u64::MAX).checked_add(1), None);
        assert_eq!(Lsn::new(u64::MAX).saturating_add(1), Lsn::new(u64::MAX));
    }
}
