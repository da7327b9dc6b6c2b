//! Timestamps: UTC, microsecond precision, stored as microseconds since the Unix epoch.
//! Text form is RFC 3339 with microseconds and `Z`; input also accepts offsets and bare dates.

use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How far `occurred_at` may lie after `recorded_at`: 5 minutes (product.md section 1).
pub const OCCURRED_AHEAD_MICROS_MAX: i64 = 5 * 60 * 1_000_000;

/// A UTC instant with microsecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

/// The earliest accepted instant, 0001-01-01T00:00:00Z: the RFC 3339 range.
const MICROS_MIN: i64 = -62_135_596_800_000_000;
/// The latest accepted instant, 9999-12-31T23:59:59.999999Z.
const MICROS_MAX: i64 = 253_402_300_799_999_999;

impl Timestamp {
    /// Builds a timestamp from microseconds since the epoch, if within years 1 to 9999.
    pub fn from_micros(micros: i64) -> Option<Timestamp> {
        (MICROS_MIN..=MICROS_MAX)
            .contains(&micros)
            .then_some(Timestamp(micros))
    }

    /// Microseconds since the Unix epoch.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// The instant one microsecond later (saturating at the end of year 9999).
    pub fn next_micro(self) -> Timestamp {
        Timestamp(self.0.saturating_add(1).min(MICROS_MAX))
    }

    /// Converts a chrono instant, truncating below microseconds.
    pub fn from_datetime(t: DateTime<Utc>) -> Option<Timestamp> {
        Timestamp::from_micros(t.timestamp_micros())
    }

    /// The instant as a chrono value.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0)
            .expect("a Timestamp is always within chrono's range (checked when built)")
    }

    /// Parses RFC 3339 (`2026-03-01T09:30:00Z`, offsets allowed, fractions truncated to
    /// microseconds) or a bare date (`2026-03-01` = 00:00:00 UTC that day).
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        let parsed = if text.len() == 10 {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
                .map_err(|e| e.to_string())
        } else {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| e.to_string())
        };
        match parsed {
            Ok(t) => Timestamp::from_datetime(t)
                .ok_or_else(|| format!("{text:?} is outside the years 0001 to 9999")),
            Err(e) => Err(format!(
                "{text:?} is not a time ({e}); use RFC 3339 like 2026-03-01T09:30:00Z or a date like 2026-03-01"
            )),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &self
                .to_datetime()
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        )
    }
}

/// Text in human-readable formats (JSON), integer microseconds in binary ones (the codec).
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            Timestamp::parse(&text).map_err(D::Error::custom)
        } else {
            let micros = i64::deserialize(d)?;
            Timestamp::from_micros(micros)
                .ok_or_else(|| D::Error::custom(format!("timestamp {micros} is out of range")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_with_offsets_and_bare_dates() {
        let z = Timestamp::parse("2026-03-01T09:30:00Z").expect("valid");
        let offset = Timestamp::parse("2026-03-01T10:30:00+01:00").expect("valid");
        assert_eq!(z, offset);
        assert_eq!(z.to_string(), "2026-03-01T09:30:00.000000Z");
        let date = Timestamp::parse("2026-03-01").expect("valid");
        assert_eq!(date.to_string(), "2026-03-01T00:00:00.000000Z");
        let fine = Timestamp::parse("2026-03-01T09:30:00.123456789Z").expect("valid");
        assert_eq!(fine.to_string(), "2026-03-01T09:30:00.123456Z");
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-03-01T25:00:00Z",
            "1e9",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
