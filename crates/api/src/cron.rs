//! Cron schedules as CronJob's `spec.schedule` accepts them: five fields
//! (minute hour day-of-month month day-of-week) with lists, ranges, steps,
//! names, and the `@hourly`-style macros. Parsing validates; `next_after`
//! finds the next firing time (the CronJob controller's clock is an input).

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};

/// One parsed schedule: the allowed values of each field as bit sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Either day field was `*`: cron fires when BOTH match then; otherwise
    /// when EITHER does (the classic Vixie cron rule Kubernetes follows).
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec}",
                fields.len()
            ));
        }
        Ok(Schedule {
            minutes: parse_field(fields[0], 0, 59, &[])?,
            hours: parse_field(fields[1], 0, 23, &[])?,
            days_of_month: parse_field(fields[2], 1, 31, &[])?,
            months: parse_field(fields[3], 1, 12, &MONTHS)?,
            days_of_week: {
                let mut bits = parse_field(fields[4], 0, 7, &DAYS)?;
                // 7 is Sunday too.
                if bits & (1 << 7) != 0 {
                    bits |= 1;
                    bits &= !(1 << 7);
                }
                bits
            },
            dom_star: fields[2].starts_with('*') || fields[2].starts_with('?'),
            dow_star: fields[4].starts_with('*') || fields[4].starts_with('?'),
        })
    }

    fn day_matches(&self, t: &DateTime<Utc>) -> bool {
        let dom = self.days_of_month & (1 << t.day()) != 0;
        let dow = self.days_of_week & (1 << t.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first firing time strictly after `after` (to the minute), searching
    /// up to five years ahead (a schedule like Feb 30 never fires: None).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = Utc
            .with_ymd_and_hms(
                after.year(),
                after.month(),
                after.day(),
                after.hour(),
                after.minute(),
                0,
            )
            .single()?
            + Duration::minutes(1);
        let limit = after + Duration::days(5 * 366);
        while t <= limit {
            if self.months & (1 << t.month()) == 0 {
                // Jump to the first day of the next month.
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
                continue;
            }
            if !self.day_matches(&t) {
                t = Utc
                    .with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
                    .single()?
                    + Duration::days(1);
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = Utc
                    .with_ymd_and_hms(t.year(), t.month(), t.day(), t.hour(), 0, 0)
                    .single()?
                    + Duration::hours(1);
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t);
        }
        None
    }
}

fn parse_value(s: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        // Month names are 1-based, day names 0-based.
        return Ok(i as u32 + min);
    }
    let v: u32 = s
        .parse()
        .map_err(|_| format!("failed to parse int from {s}"))?;
    if v < min {
        return Err(format!(
            "beginning of range ({v}) below minimum ({min}): {s}"
        ));
    }
    if v > max {
        return Err(format!("end of range ({v}) above maximum ({max}): {s}"));
    }
    Ok(v)
}

fn parse_field(field: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in field.split(',') {
        if part.is_empty() {
            return Err(format!("empty field in {field}"));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| format!("failed to parse int from {s}"))?,
                ),
            ),
            None => (part, None),
        };
        if step == Some(0) {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (
                parse_value(a, min, max, names)?,
                parse_value(b, min, max, names)?,
            );
            if a > b {
                return Err(format!(
                    "beginning of range ({a}) beyond end of range ({b}): {part}"
                ));
            }
            (a, b)
        } else {
            let v = parse_value(range, min, max, names)?;
            (v, if step.is_some() { max } else { v })
        };
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &str, after: &str, want: Option<&str>) {
        let s = Schedule::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        let after: DateTime<Utc> = after.parse().unwrap();
        let got = s.next_after(after).map(|t| t.to_rfc3339());
        assert_eq!(
            got.as_deref(),
            want.map(|w| w.parse::<DateTime<Utc>>().unwrap().to_rfc3339())
                .as_deref(),
            "{spec} after {after}"
        );
    }

    #[test]
    fn next_times() {
        check(
            "* * * * *",
            "2026-01-01T00:00:30Z",
            Some("2026-01-01T00:01:00Z"),
        );
        check(
            "*/15 * * * *",
            "2026-01-01T00:01:00Z",
            Some("2026-01-01T00:15:00Z"),
        );
        check(
            "0 3 * * *",
            "2026-01-01T04:00:00Z",
            Some("2026-01-02T03:00:00Z"),
        );
        check(
            "@hourly",
            "2026-01-01T04:59:59Z",
            Some("2026-01-01T05:00:00Z"),
        );
        check(
            "0 0 1 jan *",
            "2026-06-01T00:00:00Z",
            Some("2027-01-01T00:00:00Z"),
        );
        check(
            "0 0 * * mon",
            "2026-11-22T10:00:00Z",
            Some("2026-11-23T00:00:00Z"),
        );
        check(
            "0 0 * * 7",
            "2026-11-21T10:00:00Z",
            Some("2026-11-22T00:00:00Z"),
        );
        check(
            "0 0 13 * 5",
            "2026-11-01T00:00:00Z",
            Some("2026-11-06T00:00:00Z"),
        );
        check("0 0 30 2 *", "2026-01-01T00:00:00Z", None);
    }

    #[test]
    fn invalid_schedules() {
        for bad in [
            "",
            "* * * *",
            "61 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "@reboot",
            "TZ=UTC * * * * *",
            "a * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
