//! What a policy can reach from inside its sandbox: the `log` import, and WASI with an empty context
//! (no environment, arguments, files, sockets; stdio discarded). The import allow-list that keeps anything
//! else out is checked at load, in [`super::module`].

use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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
}

impl StoreState {
    pub(super) fn new(limits: StoreLimits, policy: Arc<str>, request_id: Arc<str>) -> Self {
        StoreState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits,
            policy,
            request_id,
            log_lines: 0,
        }
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
