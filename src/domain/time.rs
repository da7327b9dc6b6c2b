//! Timestamps: UTC, microsecond precision, stored as microseconds since the Unix epoch.
//! Text form is RFC 3339 with microseconds and `Z`; input also accepts offsets and bare dates.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
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

/// Length of the text form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const RFC3339_MICROS_BYTES: usize = 27;

impl Timestamp {
    /// The text form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written without allocating: every
    /// event's canonical bytes (the hash chain, the Merkle leaf) hold two of them, and
    /// chrono's formatter was most of the cost of writing those bytes (docs/benchmarks.md).
    pub fn rfc3339(self) -> [u8; RFC3339_MICROS_BYTES] {
        let days = self.0.div_euclid(86_400_000_000);
        let in_day = self.0.rem_euclid(86_400_000_000);
        let (year, month, day) = civil_from_days(days);
        let (secs, micros) = (in_day / 1_000_000, in_day % 1_000_000);
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, digits: usize, mut value: i64| {
            for i in (at..at + digits).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, secs / 3600);
        put(14, 2, secs / 60 % 60);
        put(17, 2, secs % 60);
        put(20, 6, micros);
        out
    }
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.rfc3339();
        f.write_str(std::str::from_utf8(&text).expect("the text form is ASCII"))
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
    proptest::proptest! {
        #[test]
        fn the_direct_text_form_equals_chronos_for_every_instant(micros in MICROS_MIN..=MICROS_MAX) {
            let t = Timestamp::from_micros(micros).expect("in range");
            let chrono = t.to_datetime().to_rfc3339_opts(SecondsFormat::Micros, true);
            proptest::prop_assert_eq!(t.to_string(), chrono);
        }
    }

    #[test]
    fn the_text_form_of_the_range_ends_and_the_epoch_is_exact() {
        for micros in [MICROS_MIN, MICROS_MAX, 0, -1, 951_782_400_000_000] {
            let t = Timestamp::from_micros(micros).expect("in range");
            assert_eq!(
                t.to_string(),
                t.to_datetime().to_rfc3339_opts(SecondsFormat::Micros, true)
            );
        }
    }

    use super::*;
    use chrono::SecondsFormat;

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
