//! Logging into the gateway's log stream, tagged there with the policy name and request id.
//!
//! On wasm this calls the host's `mcp:policy/log` import; natively (unit tests) it prints to stderr, which
//! `cargo test` captures and shows for failing tests. Never log secrets: the gateway's log is read by
//! operators, and arguments may hold customer data.

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message.as_ref());
}

pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message.as_ref());
}

pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message.as_ref());
}

pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message.as_ref());
}

/// Logs `message` at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[policy {level:?}] {message}");
}
