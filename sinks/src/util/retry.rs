//! Exponential backoff with full jitter, and the transient/permanent split.

use std::time::Duration;

use super::config::RetryConfig;

/// Waits between attempts: `initial × 2^n`, capped at `max`, each drawn uniformly from
/// [wait/2, wait] so that many sinks recovering together do not retry in lock-step.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(cfg: &RetryConfig) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        Backoff {
            next: cfg.initial_backoff,
            max: cfg.max_backoff,
            rng: seed | 1,
        }
    }

    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self.next.min(self.max);
        self.next = self.next.saturating_mul(2).min(self.max);
        // xorshift64*: jitter needs no cryptographic randomness.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let frac = (r >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        ceiling.mul_f64(0.5 + 0.5 * frac)
    }
}

/// Whether an HTTP status is worth retrying: 408, 429 and 5xx are; other 4xx are not.
pub fn status_is_transient(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_jitters() {
        let cfg = RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            ..RetryConfig::default()
        };
        let mut b = Backoff::new(&cfg);
        let waits: Vec<_> = (0..8).map(|_| b.next_wait()).collect();
        let ceilings = [100, 200, 400, 800, 800, 800, 800, 800];
        for (w, c) in waits.iter().zip(ceilings) {
            let c = Duration::from_millis(c);
            assert!(*w <= c && *w >= c / 2, "{w:?} not in [{:?}, {c:?}]", c / 2);
        }
    }

    #[test]
    fn classifies_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status_is_transient(s), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!status_is_transient(s), "{s}");
        }
    }
}
