//! Dates and times as text with Java's `DateTimeFormatter` patterns, as ksqlDB's
//! TIMESTAMPTOSTRING, FORMAT_TIMESTAMP, PARSE_TIMESTAMP and friends and `TIMESTAMP_FORMAT`
//! use them: `y M d H h m s S a E D` fields, `X Z z` zones, `'quoted'` text.
//!
//! Time zones: UTC/GMT/Z, fixed offsets (`+02:00`, `+0200`, `GMT+2`, `UTC-05:30`) and
//! region ids (`Europe/London`, from the IANA database compiled in by `chrono-tz`), whose
//! offset depends on the instant (summer time). Parsed text may name a zone by its
//! abbreviation (`PST`), read as the region Java maps it to.

use crate::eval::{civil_from_days, days_from_civil};

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Field(char, usize),
}

fn compile(pattern: &str) -> Result<Vec<Piece>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // '' is a quote; 'text' is literal text.
            if chars.get(i + 1) == Some(&'\'') {
                out.push(Piece::Text("'".into()));
                i += 2;
                continue;
            }
            let mut text = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        text.push('\'');
                        i += 2;
                        continue;
                    }
                    break;
                }
                text.push(chars[i]);
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!(
                    "Unknown pattern letter or unterminated quote in: {pattern}"
                ));
            }
            i += 1;
            out.push(Piece::Text(text));
        } else if c.is_ascii_alphabetic() {
            let mut n = 1;
            while chars.get(i + n) == Some(&c) {
                n += 1;
            }
            if !"yuMLdHhmsSaEDXxZzVn".contains(c) {
                return Err(format!("Unknown pattern letter: {c}"));
            }
            out.push(Piece::Field(c, n));
            i += n;
        } else {
            out.push(Piece::Text(c.to_string()));
            i += 1;
        }
    }
    Ok(out)
}

/// A time zone: a fixed offset, or a region whose offset changes over time.
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    /// Seconds east of UTC, and the name `z` prints.
    Fixed(i32, String),
    Region(chrono_tz::Tz),
}

impl Zone {
    /// The offset (seconds east of UTC) in force at the instant `ms`, and the name `z`
    /// prints then (`PDT`, `BST`).
    pub fn at_instant(&self, ms: i64) -> (i32, String) {
        use chrono::{Offset, TimeZone};
        use chrono_tz::OffsetName;
        match self {
            Zone::Fixed(o, name) => (*o, name.clone()),
            Zone::Region(tz) => match tz.timestamp_millis_opt(ms).single() {
                Some(t) => (
                    t.offset().fix().local_minus_utc(),
                    t.offset().abbreviation().to_string(),
                ),
                None => (0, tz.name().to_string()),
            },
        }
    }

    /// The offset for a local date-time (`local_ms`: its fields read as if in UTC), as
    /// Java resolves it: in an overlap the earlier offset; in a gap the offset before it
    /// (so the time moves forward by the gap).
    pub fn for_local(&self, local_ms: i64) -> i32 {
        use chrono::{LocalResult, Offset, TimeZone};
        let Zone::Region(tz) = self else {
            return self.at_instant(local_ms).0;
        };
        let Some(naive) = chrono::DateTime::from_timestamp_millis(local_ms).map(|t| t.naive_utc())
        else {
            return 0;
        };
        match tz.offset_from_local_datetime(&naive) {
            LocalResult::Single(o) | LocalResult::Ambiguous(o, _) => o.fix().local_minus_utc(),
            LocalResult::None => self.at_instant(local_ms - 86_400_000).0,
        }
    }
}

/// Java's short zone names (`ZoneId.SHORT_IDS` and its zone texts) for the regions they
/// stand for when parsed.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("PST", "America/Los_Angeles"),
    ("PDT", "America/Los_Angeles"),
    ("PT", "America/Los_Angeles"),
    ("MST", "America/Denver"),
    ("MDT", "America/Denver"),
    ("CST", "America/Chicago"),
    ("CDT", "America/Chicago"),
    ("EST", "America/New_York"),
    ("EDT", "America/New_York"),
    ("AKST", "America/Anchorage"),
    ("HST", "Pacific/Honolulu"),
    ("BST", "Europe/London"),
    ("CET", "Europe/Paris"),
    ("CEST", "Europe/Paris"),
    ("EET", "Europe/Athens"),
    ("EEST", "Europe/Athens"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("AEST", "Australia/Sydney"),
];

/// A zone by its id: UTC/GMT/UT/Z, an offset (`+02:00`, `GMT+2`) or a region id.
pub fn zone(id: &str) -> Result<Zone, String> {
    let t = id.trim();
    match fixed_zone(t) {
        Some(z) => Ok(z),
        None => t
            .parse::<chrono_tz::Tz>()
            .map(Zone::Region)
            .map_err(|_| format!("Unknown time-zone ID: {t}")),
    }
}

/// A zone named in parsed text: as `zone`, or a short name such as `PST`.
fn zone_in_text(t: &str) -> Option<Zone> {
    zone(t).ok().or_else(|| {
        let upper = t.to_ascii_uppercase();
        ABBREVIATIONS
            .iter()
            .find(|(a, _)| *a == upper)
            .and_then(|(_, region)| region.parse::<chrono_tz::Tz>().ok())
            .map(Zone::Region)
    })
}

fn fixed_zone(t: &str) -> Option<Zone> {
    let t = t.trim();
    let upper = t.to_ascii_uppercase();
    let rest = ["UTC", "GMT", "UT"]
        .iter()
        .find_map(|p| upper.strip_prefix(p))
        .unwrap_or(&upper);
    if rest.is_empty() || upper == "Z" {
        return Some(Zone::Fixed(
            0,
            if upper == "Z" {
                "Z".into()
            } else {
                upper.clone()
            },
        ));
    }
    parse_offset(rest).map(|secs| Zone::Fixed(secs, t.to_string()))
}

/// `+h`, `+hh`, `+hhmm`, `+hh:mm` (and `-`): seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m) = if digits.len() <= 2 {
        (digits.parse::<i32>().ok()?, 0)
    } else {
        let split = digits.len() - 2;
        (
            digits[..split].parse::<i32>().ok()?,
            digits[split..].parse::<i32>().ok()?,
        )
    };
    if h > 18 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn offset_text(secs: i32, letter: char, n: usize) -> String {
    if secs == 0 && letter == 'X' {
        return "Z".into();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    let (h, m) = (a / 3600, (a % 3600) / 60);
    match (letter, n) {
        ('X' | 'x', 1) if m == 0 => format!("{sign}{h:02}"),
        ('X' | 'x', 1) | ('X' | 'x', 2) | ('Z', 1..=3) => format!("{sign}{h:02}{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}"),
    }
}

/// `ms` since the epoch as text in `pattern`, at the zone's offset.
pub fn format(ms: i64, pattern: &str, zone_id: &str) -> Result<String, String> {
    let zone = zone(zone_id)?;
    let (offset, abbreviation) = zone.at_instant(ms);
    let zone_name = match (&zone, pattern.contains('V')) {
        (Zone::Region(tz), true) => tz.name().to_string(),
        _ => abbreviation,
    };
    let local = ms + offset as i64 * 1000;
    let days = local.div_euclid(86_400_000);
    let in_day = local.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let mut out = String::new();
    for p in compile(pattern)? {
        match p {
            Piece::Text(t) => out.push_str(&t),
            Piece::Field(c, n) => {
                let num = |v: i64| format!("{v:0n$}");
                match c {
                    'y' | 'u' if n == 2 => out.push_str(&format!("{:02}", y.rem_euclid(100))),
                    'y' | 'u' => out.push_str(&num(y)),
                    'M' | 'L' if n >= 4 => out.push_str(MONTHS[mo as usize - 1]),
                    'M' | 'L' if n == 3 => out.push_str(&MONTHS[mo as usize - 1][..3]),
                    'M' | 'L' => out.push_str(&num(mo as i64)),
                    'd' => out.push_str(&num(d as i64)),
                    'D' => out.push_str(&num(days - days_from_civil(y, 1, 1) + 1)),
                    'H' => out.push_str(&num(h)),
                    'h' => out.push_str(&num(if h % 12 == 0 { 12 } else { h % 12 })),
                    'm' => out.push_str(&num(mi)),
                    's' => out.push_str(&num(s)),
                    'S' => {
                        let frac = format!("{milli:03}000000");
                        out.push_str(&frac[..n.min(9)]);
                    }
                    'n' => out.push_str(&num(milli * 1_000_000)),
                    'a' => out.push_str(if h < 12 { "AM" } else { "PM" }),
                    'E' => {
                        let dow = (days + 3).rem_euclid(7) as usize; // 1970-01-01: Thursday
                        out.push_str(if n >= 4 { DAYS[dow] } else { &DAYS[dow][..3] });
                    }
                    'X' | 'x' | 'Z' => out.push_str(&offset_text(offset, c, n)),
                    'z' | 'V' => out.push_str(&zone_name),
                    _ => return Err(format!("Unknown pattern letter: {c}")),
                }
            }
        }
    }
    Ok(out)
}

/// Up to `limit` digits (a sign first if `signed`) from `at`.
fn read_number(text: &str, at: &mut usize, limit: usize, signed: bool) -> Option<i64> {
    let b = text.as_bytes();
    let start = *at;
    if signed && *at < b.len() && (b[*at] == b'-' || b[*at] == b'+') {
        *at += 1;
    }
    while *at < b.len() && b[*at].is_ascii_digit() && *at - start < limit {
        *at += 1;
    }
    text[start..*at].parse::<i64>().ok()
}

/// ksqlDB's partial timestamps (compared with ROWTIME): `yyyy[-MM[-dd[THH[:mm[:ss[.SSS]]]]]]`
/// with an optional zone (`Z`, `+hhmm`, `+hh:mm`, `-…`), the missing fields taken from
/// 1970-01-01T00:00:00.000 (month and day 01), in UTC unless a zone is given.
pub fn parse_partial_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    let (when, zone_id) = match t.find('T') {
        Some(at) => match t[at..].find(['+', '-', 'Z']) {
            Some(z) => (&t[..at + z], &t[at + z..]),
            None => (t, "UTC"),
        },
        None => (t, "UTC"),
    };
    const FULL: &str = "1970-01-01T00:00:00.000";
    let fill: &str = match when.len() {
        4 => "-01-01T00:00:00.000",
        7 => "-01T00:00:00.000",
        10 => "T00:00:00.000",
        13 => ":00:00.000",
        16 => ":00.000",
        19 => ".000",
        23 => "",
        _ => return None,
    };
    let complete = format!("{when}{fill}");
    debug_assert_eq!(complete.len(), FULL.len());
    parse(&complete, "yyyy-MM-dd'T'HH:mm:ss.SSS", zone_id).ok()
}

/// Text in `pattern` as ms since the epoch; a zone in the text wins over `zone_id`.
/// Fields not in the pattern take 1970-01-01T00:00:00.000.
pub fn parse(text: &str, pattern: &str, zone_id: &str) -> Result<i64, String> {
    let pieces = compile(pattern)?;
    let fail = || format!("Text '{text}' could not be parsed with the pattern '{pattern}'");
    let b = text.as_bytes();
    let mut at = 0;
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut milli) =
        (1970i64, 1u32, 1u32, 0i64, 0i64, 0i64, 0i64);
    let mut pm: Option<bool> = None;
    let mut twelve = false;
    let mut day_of_year: Option<i64> = None;
    let mut offset: Option<i32> = None;
    let mut named: Option<Zone> = None;
    for (i, p) in pieces.iter().enumerate() {
        match p {
            Piece::Text(t) => {
                if !text[at..].starts_with(t.as_str()) {
                    return Err(fail());
                }
                at += t.len();
            }
            Piece::Field(c, n) => {
                let next_is_number = matches!(pieces.get(i + 1), Some(Piece::Field(x, _)) if "yuMdDHhmsS".contains(*x));
                let signed = matches!(c, 'y' | 'u');
                let width = *n;
                let number = |at: &mut usize, max: usize| -> Result<i64, String> {
                    let limit = if next_is_number { width } else { max };
                    read_number(text, at, limit, signed).ok_or_else(fail)
                };
                match c {
                    'y' | 'u' if *n == 2 => y = 2000 + number(&mut at, 2)?,
                    'y' | 'u' => y = number(&mut at, 10)?,
                    'M' | 'L' if *n >= 3 => {
                        let found = MONTHS.iter().position(|m| {
                            let name = if *n == 3 { &m[..3] } else { m };
                            text[at..].len() >= name.len()
                                && text[at..at + name.len()].eq_ignore_ascii_case(name)
                        });
                        let Some(i) = found else { return Err(fail()) };
                        at += if *n == 3 { 3 } else { MONTHS[i].len() };
                        mo = i as u32 + 1;
                    }
                    'M' | 'L' => mo = number(&mut at, 2)? as u32,
                    'd' => d = number(&mut at, 2)? as u32,
                    'D' => day_of_year = Some(number(&mut at, 3)?),
                    'H' => h = number(&mut at, 2)?,
                    'h' => {
                        h = number(&mut at, 2)?;
                        twelve = true;
                    }
                    'm' => mi = number(&mut at, 2)?,
                    's' => s = number(&mut at, 2)?,
                    'S' => {
                        let start = at;
                        let v = number(&mut at, 9)?;
                        let digits = (at - start) as u32;
                        milli = if digits >= 3 {
                            v / 10i64.pow(digits - 3)
                        } else {
                            v * 10i64.pow(3 - digits)
                        };
                    }
                    'a' => {
                        let t = text[at..].get(..2).ok_or_else(fail)?;
                        pm = Some(t.eq_ignore_ascii_case("PM"));
                        at += 2;
                    }
                    'E' => {
                        let found = DAYS.iter().find(|dn| text[at..].starts_with(&dn[..3]));
                        let Some(dn) = found else { return Err(fail()) };
                        at += if *n >= 4 && text[at..].starts_with(*dn) {
                            dn.len()
                        } else {
                            3
                        };
                    }
                    'X' | 'x' | 'Z' => {
                        if text[at..].starts_with(['Z', 'z']) {
                            offset = Some(0);
                            at += 1;
                        } else {
                            let start = at;
                            at += 1;
                            while at < b.len()
                                && (b[at].is_ascii_digit() || b[at] == b':')
                                && at - start < 6
                            {
                                at += 1;
                            }
                            offset = Some(parse_offset(&text[start..at]).ok_or_else(fail)?);
                        }
                    }
                    'z' | 'V' => {
                        let start = at;
                        while at < b.len() && !b[at].is_ascii_whitespace() {
                            at += 1;
                        }
                        named = Some(zone_in_text(&text[start..at]).ok_or_else(fail)?);
                    }
                    _ => return Err(fail()),
                }
            }
        }
    }
    if at != text.len() {
        return Err(fail());
    }
    if twelve {
        h %= 12;
    }
    if pm == Some(true) && h < 12 {
        h += 12;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(fail());
    }
    let days = match day_of_year {
        Some(doy) => days_from_civil(y, 1, 1) + doy - 1,
        None => days_from_civil(y, mo, d),
    };
    let local = days * 86_400_000 + h * 3_600_000 + mi * 60_000 + s * 1000 + milli;
    let offset = match (offset, named) {
        (Some(o), _) => o,
        (None, Some(z)) => z.for_local(local),
        (None, None) => zone(zone_id)?.for_local(local),
    };
    Ok(local - offset as i64 * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_timestamps_fill_what_is_missing_and_honour_a_zone() {
        assert_eq!(parse_partial_timestamp("2018"), Some(1_514_764_800_000));
        assert_eq!(parse_partial_timestamp("2019-01"), Some(1_546_300_800_000));
        assert_eq!(
            parse_partial_timestamp("2018-01-01T00:00:00.001"),
            Some(1_514_764_800_001)
        );
        assert_eq!(
            parse_partial_timestamp("2019-01-01T00:00:00+0445"),
            Some(1_546_300_800_000 - (4 * 60 + 45) * 60_000)
        );
        assert_eq!(
            parse_partial_timestamp("2019-01-01T05Z"),
            Some(1_546_300_800_000 + 5 * 3_600_000)
        );
        assert_eq!(parse_partial_timestamp("not a time"), None);
    }

    #[test]
    fn java_patterns_format_and_parse_back() {
        let ms = 1_526_075_913_000; // 2018-05-11T21:58:33Z
        assert_eq!(
            format(ms, "yyyy-MM-dd HH:mm:ss", "UTC").unwrap(),
            "2018-05-11 21:58:33"
        );
        assert_eq!(
            format(ms, "yyyy-MM-dd'T'HH:mm:ss.SSSX", "UTC").unwrap(),
            "2018-05-11T21:58:33.000Z"
        );
        assert_eq!(
            format(ms, "dd MMM yy hh:mm a", "+02:00").unwrap(),
            "11 May 18 11:58 PM"
        );
        assert_eq!(
            format(ms, "EEE, yyyyMMdd Z", "-0530").unwrap(),
            "Fri, 20180511 -0530"
        );
        for (text, pattern) in [
            ("2018-05-11 21:58:33", "yyyy-MM-dd HH:mm:ss"),
            ("2018-05-11T23:58:33+0200", "yyyy-MM-dd'T'HH:mm:ssX"),
            ("20180511215833", "yyyyMMddHHmmss"),
            ("11 May 2018 09:58:33 PM", "dd MMM yyyy hh:mm:ss a"),
        ] {
            assert_eq!(parse(text, pattern, "UTC").unwrap(), ms, "{text}");
        }
        assert_eq!(
            parse("2018-05-11", "yyyy-MM-dd", "UTC").unwrap(),
            1_525_996_800_000
        );
        assert!(parse("2018-13-11", "yyyy-MM-dd", "UTC").is_err());
        assert!(parse("2018-05-11 x", "yyyy-MM-dd", "UTC").is_err());
        assert!(format(ms, "yyyy", "Mars/Olympus_Mons")
            .unwrap_err()
            .contains("Unknown time-zone ID"));
    }

    #[test]
    fn region_zones_follow_summer_time_both_ways() {
        // ksqlDB's timestamp-to-string and stringtimestamp cases.
        let may = 1_526_075_913_000; // 2018-05-11T21:58:33Z
        let pattern = "yyyy-MM-dd HH:mm:ss zzz";
        assert_eq!(
            format(may, pattern, "America/Los_Angeles").unwrap(),
            "2018-05-11 14:58:33 PDT"
        );
        assert_eq!(
            format(may, pattern, "Europe/London").unwrap(),
            "2018-05-11 22:58:33 BST"
        );
        assert_eq!(
            format(0, pattern, "Europe/London").unwrap(),
            "1970-01-01 01:00:00 BST"
        );
        assert_eq!(format(may, "VV", "Europe/London").unwrap(), "Europe/London");
        // A short name in the text is its region, at that date's offset.
        assert_eq!(
            parse(
                "2018-05-11T21:58:33 PST",
                "yyyy-MM-dd'T'HH:mm:ss zzz",
                "UTC"
            )
            .unwrap(),
            may + 7 * 3_600_000
        );
        assert_eq!(
            parse(
                "2018-01-11T21:58:33",
                "yyyy-MM-dd'T'HH:mm:ss",
                "America/New_York"
            )
            .unwrap(),
            parse("2018-01-12T02:58:33", "yyyy-MM-dd'T'HH:mm:ss", "UTC").unwrap()
        );
        // In the spring-forward gap Java moves the time forward: 02:30 is 03:30 EDT.
        assert_eq!(
            parse("2018-03-11 02:30", "yyyy-MM-dd HH:mm", "America/New_York").unwrap(),
            parse("2018-03-11 07:30", "yyyy-MM-dd HH:mm", "UTC").unwrap()
        );
        // In the fall-back overlap the earlier offset: 01:30 is 01:30 EDT.
        assert_eq!(
            parse("2018-11-04 01:30", "yyyy-MM-dd HH:mm", "America/New_York").unwrap(),
            parse("2018-11-04 05:30", "yyyy-MM-dd HH:mm", "UTC").unwrap()
        );
        assert_eq!(
            parse("2020-05-11T21:58:33z", "yyyy-MM-dd'T'HH:mm:ssX", "UTC").unwrap(),
            1_589_234_313_000
        );
    }
}
