//! A daily cap: messages per calendar day in the plan's time zone (a fixed
//! offset from UTC, `+09:00`; UTC by default), reset at local midnight.

const DAY_MS: i64 = 86_400_000;

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
    offset_ms: i64,
    day: i64,
    used: u32,
}

impl DailyCap {
    pub fn new(limit: u32, offset_minutes: i32) -> Self {
        Self { limit, offset_ms: i64::from(offset_minutes) * 60_000, day: i64::MIN, used: 0 }
    }

    fn local_day(&self, now: u64) -> i64 {
        (now as i64 + self.offset_ms).div_euclid(DAY_MS)
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

    /// Milliseconds until local midnight.
    pub fn reset_ms(&self, now: u64) -> u64 {
        let next = (self.local_day(now) + 1) * DAY_MS - self.offset_ms;
        u64::try_from(next - now as i64).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON_UTC: u64 = 1_796_126_400_000; // 2026-12-01T12:00:00Z

    #[test]
    fn the_day_rolls_over_at_local_midnight() {
        let mut utc = DailyCap::new(2, 0);
        utc.take(NOON_UTC);
        utc.take(NOON_UTC);
        assert_eq!(utc.check(NOON_UTC), Err(12 * 3_600_000), "until UTC midnight");
        assert!(utc.check(NOON_UTC + 12 * 3_600_000).is_ok(), "a new day");
        // In Tokyo (+09:00) noon UTC is 21:00: the day ends in three hours.
        let mut tokyo = DailyCap::new(1, parse_offset("+09:00").unwrap_or(0));
        tokyo.take(NOON_UTC);
        assert_eq!(tokyo.check(NOON_UTC), Err(3 * 3_600_000));
        assert!(tokyo.check(NOON_UTC + 3 * 3_600_000).is_ok());
        let mut ny = DailyCap::new(1, parse_offset("-05:00").unwrap_or(0));
        ny.take(NOON_UTC);
        assert_eq!(ny.check(NOON_UTC), Err(17 * 3_600_000), "07:00 in New York");
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
