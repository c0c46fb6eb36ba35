//! The work queue of one controller, with client-go's semantics: a key is
//! queued at most once; a key being processed is not handed to a second
//! worker, and if it changes meanwhile it is processed again afterwards;
//! failures are retried with per-key exponential back-off.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::cache::ObjectKey;

/// Retry delays: 5 ms doubling per consecutive failure, at most 60 s.
const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    queue: VecDeque<ObjectKey>,
    /// Keys that need processing (queued, or changed while processing).
    dirty: BTreeSet<ObjectKey>,
    processing: BTreeSet<ObjectKey>,
    failures: BTreeMap<ObjectKey, u32>,
    shut_down: bool,
}

#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    pub fn add(&self, key: ObjectKey) {
        let mut state = self.lock();
        if state.shut_down || !state.dirty.insert(key.clone()) {
            return;
        }
        if !state.processing.contains(&key) {
            state.queue.push_back(key);
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay` (a timer task; the key is deduplicated then).
    pub fn add_after(&self, key: ObjectKey, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Adds `key` after its back-off, which doubles with each failure.
    pub fn add_rate_limited(&self, key: ObjectKey) {
        let delay = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            let delay = BASE_DELAY
                .saturating_mul(1u32 << (*failures).min(20))
                .min(MAX_DELAY);
            *failures += 1;
            delay
        };
        self.add_after(key, delay);
    }

    /// Clears the back-off of `key` after a success.
    pub fn forget(&self, key: &ObjectKey) {
        self.lock().failures.remove(key);
    }

    pub fn failures(&self, key: &ObjectKey) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process; `None` once shut down.
    pub async fn get(&self) -> Option<ObjectKey> {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.lock();
                if state.shut_down {
                    return None;
                }
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    if !state.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; requeues it if it changed meanwhile.
    pub fn done(&self, key: &ObjectKey) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.queue.push_back(key.clone());
            drop(state);
            self.notify.notify_one();
        }
    }

    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("default", name)
    }

    #[tokio::test]
    async fn deduplicates_and_reprocesses_keys_changed_while_processing() {
        let q = WorkQueue::default();
        q.add(key("a"));
        q.add(key("a"));
        q.add(key("b"));
        assert_eq!(q.len(), 2, "a queued once");
        let a = q.get().await.unwrap();
        assert_eq!(a, key("a"));
        q.add(key("a"));
        assert_eq!(q.len(), 1, "a is processing: not handed out twice");
        assert_eq!(q.get().await.unwrap(), key("b"));
        q.done(&a);
        assert_eq!(
            q.get().await.unwrap(),
            key("a"),
            "changed while processing → again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn back_off_doubles_and_forget_resets() {
        let q = WorkQueue::default();
        let k = key("a");
        for _ in 0..3 {
            q.add_rate_limited(k.clone());
            let started = tokio::time::Instant::now();
            assert_eq!(q.get().await.unwrap(), k);
            q.done(&k);
            let waited = started.elapsed();
            assert!(waited >= BASE_DELAY, "waited {waited:?}");
        }
        assert_eq!(q.failures(&k), 3);
        q.forget(&k);
        assert_eq!(q.failures(&k), 0);
    }
}
