//! When the embedded store compacts on its own: a pure policy over the current
//! revision and a short record of which revision was current when, so memory
//! for history stays bounded by both a revision count and an age.

use std::collections::VecDeque;
use std::time::Duration;

use crate::Revision;

/// "At `at` (time since the store opened) the current revision was `revision`."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RevisionSample {
    pub(crate) at: Duration,
    pub(crate) revision: Revision,
}

/// Limits on retained history; whichever discards more wins, so neither a burst
/// of writes nor a long quiet period keeps history forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetentionPolicy {
    pub(crate) max_revisions: Option<u64>,
    pub(crate) max_age: Option<Duration>,
}

/// The revision to compact to now, if that discards anything.
pub(crate) fn auto_compaction_target(
    policy: RetentionPolicy,
    current: Revision,
    compacted: Revision,
    samples: &VecDeque<RevisionSample>,
    now: Duration,
) -> Option<Revision> {
    let by_count = policy
        .max_revisions
        .map(|max| current - i64::try_from(max).unwrap_or(i64::MAX));
    // Every revision up to a sample's revision was written before the sample was
    // taken, so a sample older than max_age marks history that is all too old.
    let by_age = policy.max_age.and_then(|max_age| {
        samples
            .iter()
            .rev()
            .find(|s| s.at.saturating_add(max_age) <= now)
            .map(|s| s.revision)
    });
    let target = by_count.into_iter().chain(by_age).max()?.min(current);
    (target > compacted).then_some(target)
}

/// Record the current revision at `now` and forget samples that can no longer
/// matter (all but the newest one older than `max_age`).
pub(crate) fn record_sample(
    samples: &mut VecDeque<RevisionSample>,
    max_age: Option<Duration>,
    now: Duration,
    revision: Revision,
) {
    let Some(max_age) = max_age else { return };
    if samples.back().is_some_and(|s| s.revision == revision) {
        return;
    }
    samples.push_back(RevisionSample { at: now, revision });
    while samples.len() >= 2 && samples[1].at.saturating_add(max_age) <= now {
        samples.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn targets() {
        let samples: VecDeque<_> = [(0, 10), (100, 500), (200, 900)]
            .into_iter()
            .map(|(at, revision)| RevisionSample {
                at: secs(at),
                revision,
            })
            .collect();
        let both = RetentionPolicy {
            max_revisions: Some(1000),
            max_age: Some(secs(150)),
        };
        let count_only = RetentionPolicy {
            max_revisions: Some(1000),
            max_age: None,
        };
        let age_only = RetentionPolicy {
            max_revisions: None,
            max_age: Some(secs(150)),
        };
        let none = RetentionPolicy {
            max_revisions: None,
            max_age: None,
        };
        // (policy, current, compacted, now, expected)
        let cases = [
            (count_only, 900, 0, 0, None),
            (count_only, 2500, 0, 0, Some(1500)),
            (count_only, 2500, 1500, 0, None),
            (age_only, 1000, 0, 140, None),
            (age_only, 1000, 0, 150, Some(10)),
            (age_only, 1000, 0, 260, Some(500)),
            (age_only, 1000, 500, 260, None),
            (both, 1200, 0, 360, Some(900)),
            (both, 5000, 0, 360, Some(4000)),
            (none, 5000, 0, 360, None),
        ];
        for (policy, current, compacted, now, expected) in cases {
            assert_eq!(
                auto_compaction_target(policy, current, compacted, &samples, secs(now)),
                expected,
                "{policy:?} current={current} compacted={compacted} now={now}"
            );
        }
    }

    #[test]
    fn samples_stay_few() {
        let mut samples = VecDeque::new();
        for t in 0..10_000 {
            record_sample(&mut samples, Some(secs(300)), secs(t), t as Revision);
        }
        assert!(samples.len() <= 302, "{}", samples.len());
        assert!(samples[0].at + secs(300) <= secs(9_999));
    }
}
