//! Time, injectable: the engine asks a [`Clock`] for "now" and for a
//! sleep until an instant. [`SystemClock`] is the real one; tests use
//! [`FakeClock`] and advance it by hand instead of sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// Completes at (or soon after) `t`.
    fn sleep_until(&self, t: Timestamp) -> Sleep;
    /// Completes at `t` as closely as the clock can: what the timer waits
    /// with before a scheduled run (one sleeper at a time). By default the
    /// same as [`Clock::sleep_until`].
    fn sleep_until_precise(&self, t: Timestamp) -> Sleep {
        self.sleep_until(t)
    }
    /// Time since an arbitrary origin that never goes back and is not
    /// moved by changes of the wall clock (NTP steps, skew): what a lease
    /// is measured on locally. By default the wall clock's, for clocks
    /// that have nothing better.
    fn monotonic(&self) -> std::time::Duration {
        std::time::Duration::try_from(self.now().duration_since(Timestamp::UNIX_EPOCH))
            .unwrap_or_default()
    }
}

/// How long before its instant a precise sleep leaves tokio's timer (whole
/// milliseconds, rounded up) for a thread's own sleep.
const PRECISE_TAIL: SignedDuration = SignedDuration::from_micros(1500);

/// The wall clock, with tokio's timer for sleeping.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn monotonic(&self) -> std::time::Duration {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        ORIGIN.get_or_init(std::time::Instant::now).elapsed()
    }

    fn sleep_until(&self, t: Timestamp) -> Sleep {
        Box::pin(tokio::time::sleep(until(t)))
    }

    /// tokio's timer ticks in whole milliseconds and rounds a sleep up to
    /// the next tick: alone, it starts a run 0–1 ms late. This sleeps with
    /// it until ~1.5 ms before `t`, then the rest on a blocking thread
    /// (`nanosleep`, late by the kernel's timer slack, ~50 µs): a sleeping
    /// thread costs no CPU, and only the timer sleeps this way.
    fn sleep_until_precise(&self, t: Timestamp) -> Sleep {
        Box::pin(async move {
            let coarse = until(t.checked_sub(PRECISE_TAIL).unwrap_or(t));
            if !coarse.is_zero() {
                tokio::time::sleep(coarse).await;
            }
            let rest = until(t);
            if !rest.is_zero() {
                // The thread ends its sleep even when this future is
                // dropped (an earlier job came): at most 1.5 ms.
                let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
            }
        })
    }
}

/// The time from now until `t` (zero once it has passed).
fn until(t: Timestamp) -> std::time::Duration {
    std::time::Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or_default()
}

/// A clock that only moves when told to.
pub struct FakeClock {
    now: Mutex<Timestamp>,
    tick: watch::Sender<Timestamp>,
}

impl FakeClock {
    pub fn new(start: Timestamp) -> FakeClock {
        let (tick, _) = watch::channel(start);
        FakeClock {
            now: Mutex::new(start),
            tick,
        }
    }

    /// Moves time forward and wakes every sleeper whose time has come.
    pub fn advance(&self, by: SignedDuration) {
        let now = {
            let mut g = match self.now.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *g = g.checked_add(by).unwrap_or(*g);
            *g
        };
        self.tick.send_replace(now);
    }

    /// How many sleeps are waiting on this clock now (for tests that must
    /// not advance time before the engine has started waiting).
    pub fn sleepers(&self) -> usize {
        self.tick.receiver_count()
    }

    pub fn set(&self, to: Timestamp) {
        if let Ok(mut g) = self.now.lock() {
            *g = to;
        }
        self.tick.send_replace(to);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        match self.now.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }

    fn sleep_until(&self, t: Timestamp) -> Sleep {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= t {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The precise sleep never ends before its instant, whether the
    /// instant is far (both phases), near (the thread's sleep only) or
    /// past (at once).
    #[tokio::test]
    async fn a_precise_sleep_never_ends_early() {
        for ahead_us in [20_000, 3_000, 1_000, 200, 0, -5_000] {
            let t = Timestamp::now() + SignedDuration::from_micros(ahead_us);
            SystemClock.sleep_until_precise(t).await;
            let now = Timestamp::now();
            assert!(now >= t, "woke at {now}, before {t} ({ahead_us} µs ahead)");
        }
    }
}
