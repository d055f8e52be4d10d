//! Every `Store` is made here, so the sandbox's limits are visible in one place.
//!
//! Why a fresh `Store` and instance per evaluation: isolation. A reused instance keeps whatever a previous
//! request left in its memory (one caller's arguments visible to the next), and a guest interrupted while
//! holding a lock stays poisoned for good. With the pooling allocator and a pre-resolved `InstancePre`,
//! instantiation costs a few microseconds, which buys that isolation cheaply.
//!
//! Limits per evaluation: linear memory (`StoreLimits`, trapping on growth failure), a wall-clock deadline
//! (epoch interruption; the engine's ticker advances the epoch every millisecond), and optional fuel.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::engine::{EPOCH_TICK, PolicyEngine};
use super::host::StoreState;
use crate::config::ModuleLimits;

/// How an evaluation failed. Every kind fails closed (deny) and is counted separately.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("exceeded its memory limit of {0} MiB")]
    OutOfMemory(u64),
    #[error("ran out of fuel")]
    OutOfFuel,
    #[error("panicked (trap: unreachable)")]
    Panic,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned an oversized answer ({0} bytes)")]
    OversizedOutput(usize),
    #[error("gave an answer the contract does not allow: {0}")]
    BadAnswer(String),
    #[error("rejected its settings: {0}")]
    BadSettings(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl Failure {
    /// Short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Timeout(_) => "timeout",
            Failure::OutOfMemory(_) => "out_of_memory",
            Failure::OutOfFuel => "out_of_fuel",
            Failure::Panic => "panic",
            Failure::Trap(_) => "trap",
            Failure::OversizedOutput(_) => "oversized_output",
            Failure::BadAnswer(_) => "bad_answer",
            Failure::BadSettings(_) => "bad_settings",
            Failure::Instantiate(_) => "instantiate",
        }
    }
}

/// A fresh, limited store for one evaluation of one policy.
pub fn store(
    engine: &PolicyEngine,
    limits: &ModuleLimits,
    policy: &Arc<str>,
    request_id: &Arc<str>,
) -> Store<StoreState> {
    let store_limits = StoreLimitsBuilder::new()
        .memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX))
        .table_elements(100_000)
        .instances(64)
        .tables(64)
        .memories(8)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(
        engine.engine(),
        StoreState::new(store_limits, policy.clone(), request_id.clone()),
    );
    store.limiter(|s| &mut s.limits);
    let ticks = limits
        .timeout
        .as_millis()
        .div_ceil(EPOCH_TICK.as_millis())
        .max(1) as u64;
    // One tick more than asked: the deadline fires between `ticks` and `ticks + 1` ticks from now.
    store.set_epoch_deadline(ticks + 1);
    store.epoch_deadline_trap();
    if let Some(fuel) = limits.fuel {
        store
            .set_fuel(fuel)
            .expect("fuel is enabled on the engine when a module asks for it");
    } else if engine.fuel_enabled() {
        store.set_fuel(u64::MAX).expect("fuel enabled");
    }
    store
}

/// Turns a wasmtime error into a [`Failure`].
pub fn classify(err: wasmtime::Error, limits: &ModuleLimits) -> Failure {
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => Failure::Timeout(limits.timeout),
            Trap::OutOfFuel => Failure::OutOfFuel,
            Trap::UnreachableCodeReached => Failure::Panic,
            other => Failure::Trap(other.to_string()),
        };
    }
    let text = format!("{err:#}");
    if text.contains("growing memory") || text.contains("memory") && text.contains("limit") {
        return Failure::OutOfMemory(limits.memory_bytes >> 20);
    }
    Failure::Trap(text)
}
