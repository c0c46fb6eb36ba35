//! Event correlation as client-go's recorder does it, so `kubectl
//! describe` shows "(x5 over 2m)" rather than five rows: an event that
//! repeats (same object, type, reason, message and source) bumps `count`
//! and `lastTimestamp` of the first one instead of creating another, and
//! when more than [`SIMILAR_LIMIT`] events of one object, type and reason
//! but different messages arrive within [`SIMILAR_WINDOW`], they are
//! combined into one "(combined from similar events): …" event. Like
//! client-go's `EventSourceObjectSpamFilter`, each source may then write
//! [`SPAM_BURST`] events about one object at once and one more every
//! [`SPAM_REFILL`] after that; the rest are dropped (a bump that was dropped
//! still counts, so the next one written carries the true count). The
//! decision is the pure [`Correlator`]; [`EventRecorder`] writes it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::{Client, Gvr, PatchType};

const EVENTS: Gvr = Gvr::new("", "v1", "events");

/// client-go's `defaultAggregateMaxEvents`.
pub const SIMILAR_LIMIT: usize = 10;
/// client-go's `defaultAggregateIntervalInSeconds`.
pub const SIMILAR_WINDOW: Duration = Duration::from_secs(600);
/// Entries remembered (client-go's LRU cache size).
const CACHE_SIZE: usize = 4096;
/// client-go's `defaultSpamBurst`: events one source may write about one
/// object before it is rate limited.
pub const SPAM_BURST: f64 = 25.0;
/// client-go's `defaultSpamQPS` (1/300): one more event per five minutes.
pub const SPAM_REFILL: Duration = Duration::from_secs(300);

/// What to write for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A new Event object with this message.
    Create { message: String },
    /// Bump the existing Event `name`.
    Bump {
        name: String,
        namespace: String,
        count: i64,
    },
    /// Nothing: the source wrote too many events about this object lately.
    Skip,
}

struct Seen {
    name: String,
    namespace: String,
    count: i64,
}

/// The pure half: which events were seen, by key.
#[derive(Default)]
pub struct Correlator {
    /// Exact key (with message) -> the Event written for it.
    seen: HashMap<String, Seen>,
    /// Key without message -> when the recent ones happened.
    similar: HashMap<String, VecDeque<jiff::Timestamp>>,
    order: VecDeque<String>,
    /// Source and object -> the token bucket of its spam filter.
    spam: HashMap<String, Bucket>,
    spam_order: VecDeque<String>,
}

/// A token bucket that starts full (golang.org/x/time/rate, as client-go's
/// spam filter uses it).
struct Bucket {
    tokens: f64,
    at: jiff::Timestamp,
}

impl Bucket {
    fn take(&mut self, now: jiff::Timestamp) -> bool {
        let elapsed = now.duration_since(self.at).as_secs_f64().max(0.0);
        self.tokens = (self.tokens + elapsed / SPAM_REFILL.as_secs_f64()).min(SPAM_BURST);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// client-go's `getSpamKey`: the source and the object, not the reason.
fn spam_key(event: &Value) -> String {
    let field = |pointer: &str| event.pointer(pointer).cloned().unwrap_or(Value::Null);
    json!([
        field("/source/component"),
        field("/source/host"),
        field("/involvedObject/kind"),
        field("/involvedObject/namespace"),
        field("/involvedObject/name"),
        field("/involvedObject/uid"),
        field("/involvedObject/apiVersion"),
    ])
    .to_string()
}

/// The identity of an event without and with its message.
fn keys(event: &Value) -> (String, String) {
    let field = |pointer: &str| event.pointer(pointer).cloned().unwrap_or(Value::Null);
    let base = json!([
        field("/involvedObject/kind"),
        field("/involvedObject/namespace"),
        field("/involvedObject/name"),
        field("/involvedObject/uid"),
        field("/involvedObject/fieldPath"),
        field("/type"),
        field("/reason"),
        field("/source/component"),
        field("/source/host"),
    ])
    .to_string();
    let exact = format!("{base}{}", field("/message"));
    (base, exact)
}

/// client-go's prefix for combined events.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

impl Correlator {
    /// Decides for `event` at `now`; the caller writes the decision and,
    /// for a creation, reports the name with [`Correlator::created`].
    pub fn observe(&mut self, event: &Value, now: jiff::Timestamp) -> (String, Decision) {
        let (base, exact) = keys(event);
        let message = event
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Similar events (other messages) in the window.
        let recent = self.similar.entry(base.clone()).or_default();
        let window = jiff::SignedDuration::try_from(SIMILAR_WINDOW).unwrap_or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            recent.pop_front();
        }
        recent.push_back(now);
        let (key, message) = if recent.len() > SIMILAR_LIMIT && !self.seen.contains_key(&exact) {
            (
                format!("{base}combined"),
                format!("{COMBINED_PREFIX}{message}"),
            )
        } else {
            (exact, message)
        };
        let decision = match self.seen.get_mut(&key) {
            Some(seen) => {
                seen.count += 1;
                Decision::Bump {
                    name: seen.name.clone(),
                    namespace: seen.namespace.clone(),
                    count: seen.count,
                }
            }
            None => Decision::Create { message },
        };
        if !self.spam_allows(event, now) {
            return (key, Decision::Skip);
        }
        (key, decision)
    }

    /// Takes a token from the bucket of the event's source and object.
    fn spam_allows(&mut self, event: &Value, now: jiff::Timestamp) -> bool {
        let key = spam_key(event);
        if !self.spam.contains_key(&key) {
            if self.spam.len() >= CACHE_SIZE {
                if let Some(oldest) = self.spam_order.pop_front() {
                    self.spam.remove(&oldest);
                }
            }
            self.spam_order.push_back(key.clone());
            self.spam.insert(
                key.clone(),
                Bucket {
                    tokens: SPAM_BURST,
                    at: now,
                },
            );
        }
        self.spam.get_mut(&key).expect("just ensured").take(now)
    }

    /// Remembers the Event created for `key`.
    pub fn created(&mut self, key: String, name: &str, namespace: &str) {
        if self.seen.len() >= CACHE_SIZE {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.order.push_back(key.clone());
        self.seen.insert(
            key,
            Seen {
                name: name.to_string(),
                namespace: namespace.to_string(),
                count: 1,
            },
        );
    }

    /// Forgets `key` (its Event is gone: expired or deleted).
    pub fn forget(&mut self, key: &str) {
        self.seen.remove(key);
        self.order.retain(|k| k != key);
    }
}

/// Writes events through a [`Correlator`]. Best effort, as in Kubernetes:
/// failures are logged by the caller's choice of level, never retried.
#[derive(Default)]
pub struct EventRecorder {
    correlator: Mutex<Correlator>,
}

impl EventRecorder {
    /// Records `event` (a complete core/v1 Event with `count: 1` and both
    /// timestamps at `now`).
    pub async fn record(
        &self,
        client: &Client,
        mut event: Value,
        now: jiff::Timestamp,
    ) -> crate::Result<()> {
        let (key, decision) = self
            .correlator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&event, now);
        if decision == Decision::Skip {
            return Ok(());
        }
        let timestamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        if let Decision::Bump {
            name,
            namespace,
            count,
        } = &decision
        {
            let patch = json!({"count": count, "lastTimestamp": timestamp});
            match client
                .patch(
                    EVENTS,
                    Some(namespace),
                    name,
                    None,
                    PatchType::Merge,
                    &patch,
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => {
                    // Expired (events live an hour): start a new one.
                    self.correlator
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .forget(&key);
                }
                Err(e) => return Err(e),
            }
        }
        if let Decision::Create { message } = &decision {
            event["message"] = json!(message);
        }
        let namespace = event
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let created = client.create(EVENTS, Some(&namespace), &event).await?;
        let name = created
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.correlator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .created(key, name, &namespace);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str, message: &str) -> Value {
        json!({
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u1"},
            "type": "Warning",
            "reason": reason,
            "message": message,
            "source": {"component": "kubelet", "host": "n1"},
        })
    }

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_repeated_event_bumps_the_first_one() {
        let mut c = Correlator::default();
        let (key, first) = c.observe(&event("BackOff", "back-off"), at(0));
        assert_eq!(
            first,
            Decision::Create {
                message: "back-off".into()
            }
        );
        c.created(key, "web.1", "default");
        for n in 2..=4 {
            let (_, d) = c.observe(&event("BackOff", "back-off"), at(n));
            assert_eq!(
                d,
                Decision::Bump {
                    name: "web.1".into(),
                    namespace: "default".into(),
                    count: n
                }
            );
        }
        // Another reason or another object is another event.
        let (_, d) = c.observe(&event("Unhealthy", "back-off"), at(5));
        assert!(matches!(d, Decision::Create { .. }), "{d:?}");
        let mut other = event("BackOff", "back-off");
        other["involvedObject"]["name"] = json!("db");
        assert!(matches!(
            c.observe(&other, at(6)).1,
            Decision::Create { .. }
        ));
    }

    #[test]
    fn many_similar_events_are_combined_and_the_window_expires() {
        let mut c = Correlator::default();
        for i in 0..SIMILAR_LIMIT {
            let (key, d) = c.observe(
                &event("Unhealthy", &format!("probe failed {i}")),
                at(i as i64),
            );
            assert!(matches!(d, Decision::Create { .. }), "{i}: {d:?}");
            c.created(key, &format!("web.{i}"), "default");
        }
        let (key, d) = c.observe(&event("Unhealthy", "probe failed 10"), at(10));
        assert_eq!(
            d,
            Decision::Create {
                message: format!("{COMBINED_PREFIX}probe failed 10")
            }
        );
        c.created(key, "web.combined", "default");
        let (_, d) = c.observe(&event("Unhealthy", "probe failed 11"), at(11));
        assert_eq!(
            d,
            Decision::Bump {
                name: "web.combined".into(),
                namespace: "default".into(),
                count: 2
            }
        );
        // Ten minutes later the window has emptied: a new message is its own event.
        let (_, d) = c.observe(&event("Unhealthy", "probe failed 12"), at(11 + 601));
        assert_eq!(
            d,
            Decision::Create {
                message: "probe failed 12".into()
            }
        );
    }

    #[test]
    fn a_source_writes_a_burst_about_one_object_then_one_per_five_minutes() {
        let mut c = Correlator::default();
        // 25 events with different reasons: all written.
        for i in 0..25 {
            let (key, d) = c.observe(&event(&format!("Reason{i}"), "m"), at(0));
            assert!(matches!(d, Decision::Create { .. }), "event {i}: {d:?}");
            c.created(key, &format!("web.{i}"), "default");
        }
        // The 26th, a repeat that would bump: dropped, but counted.
        assert_eq!(c.observe(&event("Reason0", "m"), at(1)).1, Decision::Skip);
        // Another object, or another source, has its own bucket.
        let mut other = event("Reason0", "m");
        other["involvedObject"]["name"] = json!("db");
        assert!(matches!(
            c.observe(&other, at(1)).1,
            Decision::Create { .. }
        ));
        let mut kubelet2 = event("Reason0", "m");
        kubelet2["source"]["host"] = json!("n2");
        assert!(matches!(
            c.observe(&kubelet2, at(1)).1,
            Decision::Create { .. }
        ));
        // Five minutes on, one token is back; the bump carries both repeats.
        assert_eq!(
            c.observe(&event("Reason0", "m"), at(300)).1,
            Decision::Bump {
                name: "web.0".into(),
                namespace: "default".into(),
                count: 3
            }
        );
        assert_eq!(c.observe(&event("Reason0", "m"), at(301)).1, Decision::Skip);
    }

    #[test]
    fn a_forgotten_event_is_created_again() {
        let mut c = Correlator::default();
        let (key, _) = c.observe(&event("Killing", "stopping"), at(0));
        c.created(key.clone(), "web.1", "default");
        c.forget(&key);
        assert!(matches!(
            c.observe(&event("Killing", "stopping"), at(1)).1,
            Decision::Create { .. }
        ));
    }
}
