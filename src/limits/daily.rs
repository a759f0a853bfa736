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

/// The messages of one local day: a counter apart from any threshold
/// (a call is judged by the limit that applies to it), on the day of the
/// zone it was last counted in; a zone that changes (a plan change) keeps
/// the count while the local date is the same.
#[derive(Debug, Clone)]
pub struct DailyCap {
    day: i64,
    used: u32,
}

impl Default for DailyCap {
    fn default() -> Self {
        Self { day: i64::MIN, used: 0 }
    }
}

/// The local calendar day of the instant `now`, as days since 1970-01-01.
pub fn local_day(now: u64, zone: Zone) -> i64 {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    now.saturating_add(zone.offset_ms(now)).div_euclid(DAY_MS)
}

/// Milliseconds from `now` until local midnight (the offset then, should
/// daylight saving change it before).
pub fn until_midnight(now: u64, zone: Zone) -> u64 {
    let midnight = local_day(now, zone).saturating_add(1).saturating_mul(DAY_MS);
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let guess = midnight - zone.offset_ms(now);
    let next = midnight - zone.offset_ms(guess);
    u64::try_from(next - now).unwrap_or(0)
}

impl DailyCap {
    /// A new day begins only forwards: a zone that puts the local date
    /// back (a plan change westwards) keeps counting on the later date, so
    /// switching plans back and forth grants no new allowance.
    fn roll(&mut self, now: u64, zone: Zone) {
        let day = local_day(now, zone);
        if day > self.day {
            self.day = day;
            self.used = 0;
        }
    }

    /// Milliseconds until the count starts again: the next local midnight,
    /// or later while the count is on a date the zone has not reached.
    pub fn reset_ms(&mut self, now: u64, zone: Zone) -> u64 {
        self.roll(now, zone);
        let behind = u64::try_from(self.day.saturating_sub(local_day(now, zone))).unwrap_or(0);
        until_midnight(now, zone).saturating_add(behind.saturating_mul(DAY_MS as u64))
    }

    /// `Ok(())` if one more may pass today under `limit`; otherwise the
    /// milliseconds until local midnight (`u64::MAX` for a limit of 0).
    pub fn check(&mut self, now: u64, limit: u32, zone: Zone) -> Result<(), u64> {
        self.roll(now, zone);
        if self.used < limit {
            Ok(())
        } else if limit == 0 {
            Err(u64::MAX)
        } else {
            Err(self.reset_ms(now, zone))
        }
    }

    /// Counts one; the day it was counted on.
    pub fn take(&mut self, now: u64, zone: Zone) -> i64 {
        self.roll(now, zone);
        self.used = self.used.saturating_add(1);
        self.day
    }

    /// Gives back one counted on `day` (a call that ended unbilled); one
    /// of a day that is over is gone with it.
    pub fn untake(&mut self, day: i64) {
        if day == self.day {
            self.used = self.used.saturating_sub(1);
        }
    }

    pub fn used(&mut self, now: u64, zone: Zone) -> u32 {
        self.roll(now, zone);
        self.used
    }

    /// Whether nothing is counted today (the entry can be freed).
    pub fn idle(&self, now: u64, zone: Zone) -> bool {
        self.used == 0 || self.day != local_day(now, zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON_UTC: u64 = 1_796_126_400_000; // 2026-12-01T12:00:00Z

    #[test]
    fn the_day_rolls_over_at_local_midnight() {
        let mut utc = DailyCap::default();
        utc.take(NOON_UTC, Zone::Utc);
        utc.take(NOON_UTC, Zone::Utc);
        assert_eq!(utc.check(NOON_UTC, 2, Zone::Utc), Err(12 * 3_600_000), "until UTC midnight");
        assert!(utc.check(NOON_UTC + 12 * 3_600_000, 2, Zone::Utc).is_ok(), "a new day");
        // In Tokyo (+09:00) noon UTC is 21:00: the day ends in three hours.
        let tokyo_zone = Zone::parse("+09:00").unwrap_or_default();
        let mut tokyo = DailyCap::default();
        tokyo.take(NOON_UTC, tokyo_zone);
        assert_eq!(tokyo.check(NOON_UTC, 1, tokyo_zone), Err(3 * 3_600_000));
        assert!(tokyo.check(NOON_UTC + 3 * 3_600_000, 1, tokyo_zone).is_ok());
        let ny_zone = Zone::parse("-05:00").unwrap_or_default();
        let mut ny = DailyCap::default();
        ny.take(NOON_UTC, ny_zone);
        assert_eq!(ny.check(NOON_UTC, 1, ny_zone), Err(17 * 3_600_000), "07:00 in New York");
        assert_eq!(ny.check(NOON_UTC, 0, ny_zone), Err(u64::MAX), "a limit of zero: never");
    }

    #[test]
    fn a_count_outlives_a_new_limit_and_a_new_zone_on_the_same_date() {
        let mut d = DailyCap::default();
        for _ in 0..5 {
            d.take(NOON_UTC, Zone::Utc);
        }
        assert!(d.check(NOON_UTC, 6, Zone::Utc).is_ok());
        assert!(d.check(NOON_UTC, 5, Zone::Utc).is_err());
        // 12:00 UTC is 07:00 in New York, the same date: the count stays.
        let ny = Zone::parse("-05:00").unwrap_or_default();
        assert_eq!(d.used(NOON_UTC, ny), 5);
        // In Tokyo it is already 21:00... of the same date too; at 16:00 UTC,
        // Tokyo's next date begins, and so does its count.
        let tokyo = Zone::parse("+09:00").unwrap_or_default();
        assert_eq!(d.used(NOON_UTC + 4 * 3_600_000, tokyo), 0);
        let day = d.take(NOON_UTC + 4 * 3_600_000, tokyo);
        d.untake(day);
        assert_eq!(d.used(NOON_UTC + 4 * 3_600_000, tokyo), 0, "an unbilled call gives its slot back");
        // Back to New York, where it is still the first date: the count
        // stays on Tokyo's later date, and resets when New York reaches it.
        d.take(NOON_UTC + 4 * 3_600_000, tokyo);
        assert_eq!(d.used(NOON_UTC + 5 * 3_600_000, ny), 1, "no new allowance by changing zones back");
        assert_eq!(d.reset_ms(NOON_UTC + 5 * 3_600_000, ny), (12 + 24) * 3_600_000);
    }

    #[test]
    fn named_zones_follow_daylight_saving() {
        let ny = Zone::parse("America/New_York").unwrap_or_default();
        // 2026-12-01 noon UTC is 07:00 EST (-05:00): 17 hours to midnight.
        let mut winter = DailyCap::default();
        winter.take(NOON_UTC, ny);
        assert_eq!(winter.check(NOON_UTC, 1, ny), Err(17 * 3_600_000));
        // 2026-07-01 noon UTC is 08:00 EDT (-04:00): 16 hours.
        let july = 1_782_907_200_000; // 2026-07-01T12:00:00Z
        let mut summer = DailyCap::default();
        summer.take(july, ny);
        assert_eq!(summer.check(july, 1, ny), Err(16 * 3_600_000));
        // The day daylight saving ends (2026-11-01) is 25 hours long.
        let before = 1_793_505_600_000; // 2026-11-01T04:00:00Z, 00:00 EDT
        assert_eq!(until_midnight(before, ny), 25 * 3_600_000);
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
