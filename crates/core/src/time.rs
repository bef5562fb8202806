//! Timestamps: milliseconds since the Unix epoch, written as RFC 3339 UTC with exactly three
//! fractional digits and a `Z` (`2025-05-23T14:03:07.123Z`), whatever the input's offset was.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampError(pub String);

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    pub fn plus_secs(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Parses RFC 3339 with any offset; sub-millisecond digits are truncated toward the past,
    /// so an inclusive `since` never excludes an event of the same millisecond.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimestampError> {
        let parsed = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
            TimestampError(format!("`{s}` is not an RFC 3339 timestamp ({e}); expected e.g. 2025-05-23T14:03:07.123Z"))
        })?;
        let nanos = parsed.unix_timestamp_nanos();
        let ms = nanos.div_euclid(1_000_000);
        i64::try_from(ms).map(Timestamp).map_err(|_| TimestampError(format!("`{s}` is out of range")))
    }

    pub fn to_rfc3339(self) -> String {
        self.text().as_str().to_owned()
    }

    /// The RFC 3339 text without a heap allocation or a formatter: every event written and read
    /// carries several timestamps, and `format!` of the parts was a few percent of the writer's
    /// time. Instants outside the years 0000–9999 (which no clock produces) are written as the
    /// nearest end of that range, so the output always parses.
    fn text(self) -> Rfc3339Text {
        const MS_PER_DAY: i64 = 86_400_000;
        const FIRST: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
        const LAST: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let ms = self.0.clamp(FIRST, LAST);
        let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
        let of_day = ms.rem_euclid(MS_PER_DAY);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, digits: usize, value: i64| {
            let mut v = value;
            for i in (at..at + digits).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, of_day / 3_600_000);
        put(14, 2, of_day / 60_000 % 60);
        put(17, 2, of_day / 1000 % 60);
        put(20, 3, of_day % 1000);
        Rfc3339Text(out)
    }
}

/// (year, month, day) of the day `days` after 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, always ASCII.
struct Rfc3339Text([u8; 24]);

impl Rfc3339Text {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("9999-12-31T23:59:59.999Z")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text().as_str())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "UTC, RFC 3339, millisecond precision, `Z` suffix",
            "examples": ["2025-05-23T14:03:07.123Z"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z() {
        let t = Timestamp::parse_rfc3339("2025-05-23T16:03:07.123456+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-05-23T14:03:07.123Z");
        assert_eq!(Timestamp::from_millis(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn formats_as_the_calendar_does_across_the_range() {
        // Against the `time` crate's calendar: leap days, century rules, before 1970.
        let reference = |ms: i64| {
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        };
        let fixed = [
            -62_167_219_200_000, // 0000-01-01
            -2_208_988_800_001,  // 1899-12-31T23:59:59.999
            -1,
            951_782_400_000,   // 2000-02-29
            4_107_542_400_000, // 2100-03-01
            253_402_300_799_999,
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let spread = (0..20_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 315_569_520_000_000) as i64 - 62_167_219_200_000
        });
        for ms in fixed.into_iter().chain(spread) {
            assert_eq!(Timestamp::from_millis(ms).to_rfc3339(), reference(ms), "{ms}");
        }
        assert_eq!(Timestamp::from_millis(i64::MAX).to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::from_millis(i64::MIN).to_rfc3339(), "0000-01-01T00:00:00.000Z");
        let shown = format!("{}", Timestamp::from_millis(951_782_400_123));
        assert_eq!(shown, "2000-02-29T00:00:00.123Z");
        assert_eq!(serde_json::to_string(&Timestamp::from_millis(0)).unwrap(), "\"1970-01-01T00:00:00.000Z\"");
    }

    #[test]
    fn refuses_garbage() {
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
        assert!(Timestamp::parse_rfc3339("2025-13-01T00:00:00Z").is_err());
    }
}
