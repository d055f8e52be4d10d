//! What a policy can reach from inside its sandbox: the `log` import, and WASI with an empty context
//! (no environment, arguments, files, sockets; stdio discarded). The import allow-list that keeps anything
//! else out is checked at load, in [`super::module`].
//!
//! Nothing a guest reaches can block or tell one evaluation from another (`wit/policy.wit` says so to
//! policy authors): both clocks read one instant per evaluation, the instant the sandbox was made, which does
//! not advance; `subscribe-duration` / `subscribe-instant` give pollables that are ready at once, so a sleep
//! or a poll returns immediately and a guest that waits in a loop runs into its epoch deadline (`timeout`);
//! random bytes are one fixed ChaCha stream ([`RANDOM_SEED`]), the same in every evaluation.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use wasmtime::StoreLimits;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::{LogLevel, mcp};

/// Log lines a single evaluation may emit, and the length of each; the rest is dropped (and said so once).
const LOG_LINES_PER_EVAL: u32 = 32;
const LOG_LINE_MAX: usize = 2048;

/// The state of one sandbox (one `Store`).
pub struct StoreState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
    pub(super) policy: Arc<str>,
    pub(super) request_id: Arc<str>,
    log_lines: u32,
    /// What the monotonic clock reads during this evaluation (nanoseconds since the process's first sandbox).
    monotonic_now: u64,
}

/// The seed of the sandbox's random stream (`wasi:random/random` and `insecure`; `insecure-seed` answers it).
pub const RANDOM_SEED: u64 = 0x6d63_702d_6761_7465; // "mcp-gate"

impl StoreState {
    pub(super) fn new(limits: StoreLimits, policy: Arc<str>, request_id: Arc<str>) -> Self {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let monotonic_now =
            u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX);
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let wasi = WasiCtx::builder()
            .wall_clock(FrozenWallClock(wall))
            .secure_random(rand::rngs::StdRng::seed_from_u64(RANDOM_SEED))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(RANDOM_SEED))
            .insecure_random_seed(u128::from(RANDOM_SEED))
            .build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            limits,
            policy,
            request_id,
            log_lines: 0,
            monotonic_now,
        }
    }
}

/// A wall clock stopped at one instant.
struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// `wasi:clocks/monotonic-clock` for guests: stopped, and every wait on it is over at once. Linked over
/// wasmtime-wasi's own (which sleeps on the host thread) by [`super::engine`].
pub(super) struct FrozenMonotonic;

impl HasData for FrozenMonotonic {
    type Data<'a> = FrozenMonotonicView<'a>;
}

pub(super) struct FrozenMonotonicView<'a> {
    table: &'a mut ResourceTable,
    now: u64,
}

impl StoreState {
    pub(super) fn frozen_monotonic(&mut self) -> FrozenMonotonicView<'_> {
        FrozenMonotonicView {
            table: &mut self.table,
            now: self.monotonic_now,
        }
    }
}

/// A pollable that is always ready.
struct Ready;

#[async_trait::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

impl FrozenMonotonicView<'_> {
    fn ready(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let r = self.table.push(Ready)?;
        subscribe(self.table, r)
    }
}

impl monotonic_clock::Host for FrozenMonotonicView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.now)
    }
    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1)
    }
    fn subscribe_instant(
        &mut self,
        _when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.ready()
    }
    fn subscribe_duration(
        &mut self,
        _duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.ready()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl mcp::policy::types::Host for StoreState {}

impl mcp::policy::log::Host for StoreState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log_lines += 1;
        if self.log_lines > LOG_LINES_PER_EVAL {
            if self.log_lines == LOG_LINES_PER_EVAL + 1 {
                tracing::warn!(policy = %self.policy, request_id = %self.request_id, "policy log limit reached; further lines dropped");
            }
            return;
        }
        let mut message = message;
        if message.len() > LOG_LINE_MAX {
            let mut cut = LOG_LINE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let (policy, request_id) = (&*self.policy, &*self.request_id);
        match level {
            LogLevel::Debug => tracing::debug!(policy, request_id, "policy: {message}"),
            LogLevel::Info => tracing::info!(policy, request_id, "policy: {message}"),
            LogLevel::Warn => tracing::warn!(policy, request_id, "policy: {message}"),
            LogLevel::Error => tracing::error!(policy, request_id, "policy: {message}"),
        }
    }
}
