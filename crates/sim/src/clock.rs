//! Virtual time and seeded randomness. The runtime's clock is paused, so
//! time advances only when every task waits; the wall-clock date the
//! objects carry is a fixed epoch plus that virtual time.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// 2030-01-01T00:00:00Z: where every simulation's virtual time starts.
const EPOCH_SECONDS: i64 = 1_893_456_000;

pub struct SimClock {
    start: tokio::time::Instant,
}

impl SimClock {
    /// Must be called inside the paused runtime.
    pub fn new() -> SimClock {
        SimClock {
            start: tokio::time::Instant::now(),
        }
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed()
    }

    fn now_jiff(&self) -> jiff::Timestamp {
        let e = self.start.elapsed();
        jiff::Timestamp::new(EPOCH_SECONDS + e.as_secs() as i64, e.subsec_nanos() as i32)
            .expect("virtual time in range")
    }
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock::new()
    }
}

impl controllers::runtime::Clock for SimClock {
    fn now(&self) -> jiff::Timestamp {
        self.now_jiff()
    }
}

impl apiserver::Clock for SimClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let t = self.now_jiff();
        chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32)
            .expect("virtual time in range")
    }
}

/// A seeded generator shared by everything random in one simulation.
pub struct SeededRandom {
    rng: Mutex<StdRng>,
}

impl SeededRandom {
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.lock().random_bool(p.min(1.0))
    }

    pub fn below(&self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.lock().random_range(0..n)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl apiserver::Random for SeededRandom {
    fn next_u64(&self) -> u64 {
        self.lock().random()
    }
}
