//! Host-side bindings generated from `wit/policy.wit` (package `mcp:policy@0.2.0`, world `policy`).

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    additional_derives: [PartialEq],
});

pub use mcp::policy::log::Level as LogLevel;
pub use mcp::policy::types;
