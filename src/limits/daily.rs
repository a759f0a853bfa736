//! A daily cap: messages per calendar day in the plan's time zone (an IANA
//! name such as `Asia/Tokyo`, daylight saving included, or a fixed offset
//! such as `+09:00`; UTC by default), reset at local midnight.

use chrono::{Offset, TimeZone};

const DAY_MS: i64 = 86_400_000;

/// Where the day of a daily cap begins and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    #[default]
    Utc,
    /// Minutes east of UTC.
    Fixed(i32),
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `UTC`, an offset (`+09:00`), or an IANA name (`America/New_York`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match parse_offset(text) {
            Ok(0) => Ok(Zone::Utc),
            Ok(minutes) => Ok(Zone::Fixed(minutes)),
            Err(_) => text.trim().parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
                format!("'{text}' is neither a UTC offset (+09:00) nor a time zone name (Asia/Tokyo)")
            }),
        }
    }

    /// Milliseconds east of UTC at the instant `ms`.
    fn offset_ms(self, ms: i64) -> i64 {
        match self {
            Zone::Utc => 0,
            Zone::Fixed(minutes) => i64::from(minutes) * 60_000,
            Zone::Named(tz) => chrono::Utc.timestamp_millis_opt(ms).single().map_or(0, |t| {
                i64::from(tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc()) * 1000
            }),
        }
    }
}

/// A time zone as an offset from UTC, parsed from `UTC`, `Z`, `+09:00`,
/// `-05:30`.
pub fn parse_offset(text: &str) -> Result<i32, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(0);
    }
    let bad = || format!("'{t}' is not a UTC offset such as +09:00 or -05:30");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 60 + m))
}

#[derive(Debug, Clone)]
pub struct DailyCap {
    limit: u32,
    zone: Zone,
    day: i64,
    used: u32,
}

impl DailyCap {
    pub fn new(limit: u32, zone: Zone) -> Self {
        Self { limit, zone, day: i64::MIN, used: 0 }
    }

    fn local_day(&self, now: u64) -> i64 {
        let now = now as i64;
        (now + self.zone.offset_ms(now)).div_euclid(DAY_MS)
    }

    fn roll(&mut self, now: u64) {
        let day = self.local_day(now);
        if day != self.day {
            self.day = day;
            self.used = 0;
        }
    }

    /// `Ok(())` if one more may pass today; otherwise the milliseconds
    /// until local midnight.
    pub fn check(&mut self, now: u64) -> Result<(), u64> {
        self.roll(now);
        if self.used < self.limit {
            Ok(())
        } else {
            Err(self.reset_ms(now))
        }
    }

    pub fn take(&mut self, now: u64) {
        self.roll(now);
        self.used += 1;
    }

    pub fn used(&mut self, now: u64) -> u32 {
        self.roll(now);
        self.used
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Milliseconds until local midnight (the offset then, should daylight
    /// saving change it before).
    pub fn reset_ms(&self, now: u64) -> u64 {
        let midnight = (self.local_day(now) + 1) * DAY_MS;
        let guess = midnight - self.zone.offset_ms(now as i64);
        let next = midnight - self.zone.offset_ms(guess);
        u64::try_from(next - now as i64).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON_UTC: u64 = 1_796_126_400_000; // 2026-12-01T12:00:00Z

    #[test]
    fn the_day_rolls_over_at_local_midnight() {
        let mut utc = DailyCap::new(2, Zone::Utc);
        utc.take(NOON_UTC);
        utc.take(NOON_UTC);
        assert_eq!(utc.check(NOON_UTC), Err(12 * 3_600_000), "until UTC midnight");
        assert!(utc.check(NOON_UTC + 12 * 3_600_000).is_ok(), "a new day");
        // In Tokyo (+09:00) noon UTC is 21:00: the day ends in three hours.
        let mut tokyo = DailyCap::new(1, Zone::parse("+09:00").unwrap_or_default());
        tokyo.take(NOON_UTC);
        assert_eq!(tokyo.check(NOON_UTC), Err(3 * 3_600_000));
        assert!(tokyo.check(NOON_UTC + 3 * 3_600_000).is_ok());
        let mut ny = DailyCap::new(1, Zone::parse("-05:00").unwrap_or_default());
        ny.take(NOON_UTC);
        assert_eq!(ny.check(NOON_UTC), Err(17 * 3_600_000), "07:00 in New York");
    }

    #[test]
    fn named_zones_follow_daylight_saving() {
        let ny = Zone::parse("America/New_York").unwrap_or_default();
        // 2026-12-01 noon UTC is 07:00 EST (-05:00): 17 hours to midnight.
        let mut winter = DailyCap::new(1, ny);
        winter.take(NOON_UTC);
        assert_eq!(winter.check(NOON_UTC), Err(17 * 3_600_000));
        // 2026-07-01 noon UTC is 08:00 EDT (-04:00): 16 hours.
        let july = 1_782_907_200_000; // 2026-07-01T12:00:00Z
        let mut summer = DailyCap::new(1, ny);
        summer.take(july);
        assert_eq!(summer.check(july), Err(16 * 3_600_000));
        // The day daylight saving ends (2026-11-01) is 25 hours long.
        let before = 1_793_505_600_000; // 2026-11-01T04:00:00Z, 00:00 EDT
        assert_eq!(DailyCap::new(1, ny).reset_ms(before), 25 * 3_600_000);
        assert_eq!(Zone::parse("Asia/Tokyo").map(|z| z.offset_ms(0)), Ok(9 * 3_600_000));
        assert!(Zone::parse("Mars/Olympus").is_err());
        assert_eq!(Zone::parse("UTC"), Ok(Zone::Utc));
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("UTC"), Ok(0));
        assert_eq!(parse_offset("+05:30"), Ok(330));
        assert_eq!(parse_offset("-03:00"), Ok(-180));
        assert!(parse_offset("Asia/Tokyo").is_err());
        assert!(parse_offset("+25:00").is_err());
    }
}
