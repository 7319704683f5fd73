//! The builder: an [`Engine`] from parts, with defaults for what an
//! embedder does not care about.
//!
//! Owns: [`EngineBuilder`].
//! Must not: do anything `Engine::start` does not; it only gathers
//! arguments.

use std::sync::Arc;

use kala_executor::Executor;
use kala_store::{JobStore, MemoryStore};

use crate::clock::{Clock, SystemClock};
use crate::config::{EngineConfig, EngineError};
use crate::facade::Engine;

/// Builds an [`Engine`]:
///
/// ```no_run
/// # async fn f() -> Result<(), kala_engine::EngineError> {
/// use std::sync::Arc;
/// let engine = kala_engine::Engine::builder()
///     .store(Arc::new(kala_store::MemoryStore::new()))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
///
/// Defaults: an in-memory store (nothing survives the process: pass a
/// durable store for real use), the system clock, an executor with no
/// in-process handlers, and [`EngineConfig::default`].
#[derive(Default)]
pub struct EngineBuilder {
    store: Option<Arc<dyn JobStore>>,
    clock: Option<Arc<dyn Clock>>,
    executor: Option<Executor>,
    config: EngineConfig,
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }
}

impl EngineBuilder {
    /// Where jobs and run records are kept.
    pub fn store(mut self, store: Arc<dyn JobStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The source of time ([`crate::FakeClock`] in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The executor (e.g. one with settings of its own); handlers can
    /// also be registered on the engine later.
    pub fn executor(mut self, executor: Executor) -> Self {
        self.executor = Some(executor);
        self
    }

    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Loads the store's jobs and starts the timer (see [`Engine::start`]).
    pub async fn build(self) -> Result<Engine, EngineError> {
        let executor = match self.executor {
            Some(e) => e,
            None => Executor::new()?,
        };
        Engine::start(
            self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
            executor,
            self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            self.config,
        )
        .await
    }
}
