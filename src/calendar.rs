//! Dates without a date library: Unix milliseconds to and from RFC 3339
//! (UTC) and `YYYY-MM-DD` days, by the proleptic Gregorian calendar.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-12-01T10:00:00Z` (also with fractions, or `+00:00`), or a whole
/// number of Unix seconds, as Unix milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return seconds.checked_mul(1000).ok_or_else(|| "the time is out of range".into());
    }
    let bad = || format!("'{text}' is not an RFC 3339 time such as 2026-12-01T10:00:00Z");
    let number = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad);
    let body = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00")).ok_or_else(bad)?;
    let (date, clock) = body.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let mut d = date.split('-');
    let (y, m, day) = (number(d.next())?, number(d.next())?, number(d.next())?);
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut c = clock.split(':');
    let (h, min, s) = (number(c.next())?, number(c.next())?, number(c.next())?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 60 {
        return Err(bad());
    }
    let millis = fraction.get(..fraction.len().min(3)).unwrap_or("");
    let millis =
        if millis.is_empty() { 0 } else { number(Some(millis))? * 10_i64.pow(3 - millis.len() as u32) };
    Ok((days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + s) * 1000 + millis)
}

/// RFC 3339 in UTC, to the second.
pub fn format_time(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(seconds.div_euclid(86_400));
    let s = seconds.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

/// The UTC day of `ms`, `YYYY-MM-DD`.
pub fn day(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC day `days` days before `ms`'s, `YYYY-MM-DD`.
pub fn utc_day_before(ms: i64, days: u32) -> String {
    day(ms - i64::from(days) * 86_400_000)
}

/// Unix milliseconds at the start of `ms`'s UTC day and month.
pub fn start_of_day(ms: i64) -> i64 {
    ms.div_euclid(86_400_000) * 86_400_000
}

pub fn start_of_month(ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(ms.div_euclid(86_400_000));
    days_from_civil(y, m, 1) * 86_400_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let t = parse_time("2026-12-01T10:09:06Z").unwrap_or(0);
        assert_eq!(t, 1_796_119_746_000);
        assert_eq!(format_time(t), "2026-12-01T10:09:06Z");
        assert_eq!(parse_time("2026-12-01T10:09:06.5+00:00"), Ok(t + 500));
        assert_eq!(parse_time("1796119746"), Ok(t));
        assert_eq!(day(t), "2026-12-01");
        assert_eq!(format_time(start_of_month(t)), "2026-12-01T00:00:00Z");
        assert_eq!(format_time(start_of_day(t)), "2026-12-01T00:00:00Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time("2024-02-29T00:00:00Z").map(day).as_deref(), Ok("2024-02-29"));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
    }
}
