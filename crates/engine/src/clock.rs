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
}

/// The wall clock, with tokio's timer for sleeping.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, t: Timestamp) -> Sleep {
        let wait = t.duration_since(Timestamp::now());
        let wait = std::time::Duration::try_from(wait).unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
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
