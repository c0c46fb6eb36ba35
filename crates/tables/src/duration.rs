//! Kubernetes' `HumanDuration`: the compact ages kubectl shows (`5s`,
//! `3m2s`, `2d5h`), with the same precision cut-offs so columns line up
//! with what users know from real clusters.

use chrono::{DateTime, Duration, Utc};

/// Formats a duration the way `duration.HumanDuration` does: more precision
/// for young objects, less as they age.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.num_seconds();
    // Up to a second of clock skew between machines still reads as "now".
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{}h", hours / 24, h);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        if days == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{}d", hours / 24 / 365, days);
    }
    format!("{}y", hours / 24 / 365)
}

/// Kubernetes' `translateTimestampSince`: `<unknown>` for a missing time.
pub fn since(timestamp: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match timestamp {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// Parses an RFC 3339 API timestamp (`metav1.Time` or `MicroTime`).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `seconds` of age formats as `expect`.
    fn check(seconds: i64, expect: &str) {
        assert_eq!(
            human_duration(Duration::seconds(seconds)),
            expect,
            "{seconds}s"
        );
    }

    #[test]
    fn human_durations() {
        check(-5, "<invalid>");
        check(-1, "0s");
        check(0, "0s");
        check(5, "5s");
        check(119, "119s");
        check(120, "2m");
        check(182, "3m2s");
        check(599, "9m59s");
        check(600, "10m");
        check(3 * 3600 - 1, "179m");
        check(3 * 3600, "3h");
        check(3 * 3600 + 60 * 5 + 9, "3h5m");
        check(8 * 3600, "8h");
        check(47 * 3600 + 59 * 60, "47h");
        check(48 * 3600, "2d");
        check(2 * 86400 + 5 * 3600, "2d5h");
        check(8 * 86400, "8d");
        check(729 * 86400, "729d");
        check(730 * 86400, "2y");
        check(731 * 86400, "2y1d");
        check(8 * 365 * 86400, "8y");
    }

    #[test]
    fn since_missing_is_unknown() {
        let now = parse_timestamp("2024-01-01T00:00:00Z").unwrap();
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(parse_timestamp("2023-12-31T23:59:00Z"), now), "60s");
        assert_eq!(
            since(parse_timestamp("2023-12-31T23:59:59.5+00:00"), now),
            "0s"
        );
    }
}
