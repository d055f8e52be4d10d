//! Loading one policy module: read the file, check its SHA-256 pin, compile (or take from the cache), refuse
//! imports outside the allow-list (naming them), resolve imports once (`PolicyPre`), and have the policy
//! validate its settings. A module that fails any step never serves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;

use super::bindings::PolicyPre;
use super::engine::{EngineError, PolicyEngine};
use super::host::StoreState;
use super::sandbox::{self, Failure};
use crate::config::{ModuleLimits, ModuleSpec, PolicyMode};

/// Interfaces a policy may import. `mcp:policy/*` is the contract; the WASI ones are what Rust's standard
/// library links on `wasm32-wasip2`, all provided empty (no env, args, files, sockets; stdio discarded).
pub const ALLOWED_IMPORTS: &[&str] = &[
    "mcp:policy/log@0.2.",
    "mcp:policy/types@0.2.",
    "wasi:io/",
    "wasi:cli/environment@",
    "wasi:cli/exit@",
    "wasi:cli/stdin@",
    "wasi:cli/stdout@",
    "wasi:cli/stderr@",
    "wasi:cli/terminal-",
    "wasi:clocks/",
    "wasi:random/",
];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("policy `{name}`: cannot read {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy `{name}`: {path} has sha256 {actual}, but the config pins {expected}")]
    PinMismatch {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("policy `{name}`: {source}")]
    Compile {
        name: String,
        #[source]
        source: EngineError,
    },
    #[error(
        "policy `{name}` imports `{import}`, which policies may not use (allowed: mcp:policy/log, and the WASI io/cli/clocks/random interfaces Rust's std links)"
    )]
    ForbiddenImport { name: String, import: String },
    #[error(
        "policy `{name}` was built against {version}, but this gateway speaks mcp:policy@0.2.0 only: rebuild it with the policy-sdk of this gateway (the contract is wit/policy.wit)"
    )]
    OlderContract { name: String, version: String },
    #[error("policy `{name}` does not implement the mcp:policy@0.2.0 `policy` world: {detail}")]
    NotAPolicy { name: String, detail: String },
    #[error("policy `{name}` {failure}")]
    Settings { name: String, failure: Failure },
}

/// A loaded, validated policy module.
pub struct PolicyModule {
    pub name: Arc<str>,
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the component file.
    pub sha256: String,
    /// Settings as JSON text, and the SHA-256 of that text (for the audit trail).
    pub settings: String,
    pub settings_digest: String,
    pub mode: PolicyMode,
    pub limits: ModuleLimits,
    pub(super) pre: PolicyPre<StoreState>,
    /// Imports the component declares, for `policy check`.
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub from_cache: bool,
}

impl std::fmt::Debug for PolicyModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyModule")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Loads and validates `spec` (blocking: reads files and compiles).
pub fn load(engine: &PolicyEngine, spec: &ModuleSpec) -> Result<PolicyModule, LoadError> {
    let name = spec.name.clone();
    let bytes = std::fs::read(&spec.path).map_err(|source| LoadError::Read {
        name: name.clone(),
        path: spec.path.clone(),
        source,
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(expected) = &spec.sha256
        && *expected != sha256
    {
        return Err(LoadError::PinMismatch {
            name,
            path: spec.path.clone(),
            expected: expected.clone(),
            actual: sha256,
        });
    }
    let (component, from_cache) =
        engine
            .compile(&spec.path, &bytes, &sha256)
            .map_err(|source| LoadError::Compile {
                name: name.clone(),
                source,
            })?;
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine.engine())
        .map(|(n, _)| n.to_owned())
        .collect();
    let exports: Vec<String> = ty
        .exports(engine.engine())
        .map(|(n, item)| match item.ty {
            ComponentItem::ComponentFunc(_) => format!("func {n}"),
            _ => n.to_owned(),
        })
        .collect();
    if let Some(version) = older_contract(&imports, &exports) {
        return Err(LoadError::OlderContract { name, version });
    }
    if let Some(bad) = imports
        .iter()
        .find(|i| !ALLOWED_IMPORTS.iter().any(|a| i.starts_with(a)))
    {
        return Err(LoadError::ForbiddenImport {
            name,
            import: bad.clone(),
        });
    }
    let instance_pre =
        engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::NotAPolicy {
                name: name.clone(),
                detail: format!("{e:#}"),
            })?;
    let pre = PolicyPre::new(instance_pre).map_err(|e| LoadError::NotAPolicy {
        name: name.clone(),
        detail: format!("{e:#}"),
    })?;
    let module = PolicyModule {
        name: Arc::from(name.as_str()),
        path: spec.path.clone(),
        sha256,
        settings_digest: hex::encode(Sha256::digest(spec.settings.as_bytes())),
        settings: spec.settings.clone(),
        mode: spec.mode,
        limits: spec.limits,
        pre,
        imports,
        exports,
        from_cache,
    };
    module
        .validate_settings(engine)
        .map_err(|failure| LoadError::Settings { name, failure })?;
    Ok(module)
}

/// The contract version a component was built against, when it is not this gateway's: an `mcp:policy`
/// import of another version, or the 0.1 export `hidden-tools`.
fn older_contract(imports: &[String], exports: &[String]) -> Option<String> {
    if let Some(other) = imports
        .iter()
        .filter_map(|i| i.strip_prefix("mcp:policy/"))
        .filter_map(|i| i.split_once('@').map(|(_, v)| v))
        .find(|v| !v.starts_with("0.2."))
    {
        return Some(format!("mcp:policy@{other}"));
    }
    exports
        .iter()
        .any(|e| e == "func hidden-tools")
        .then(|| "mcp:policy@0.1.0".to_owned())
}

impl PolicyModule {
    /// Runs the guest's `validate-settings` in a sandbox.
    pub fn validate_settings(&self, engine: &PolicyEngine) -> Result<(), Failure> {
        let request_id: Arc<str> = Arc::from("load");
        let mut store = sandbox::store(engine, &self.limits, &self.name, &request_id);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| sandbox::classify(e, &self.limits))?;
        let started = Instant::now();
        let answer = instance
            .call_validate_settings(&mut store, &self.settings)
            .map_err(|e| sandbox::classify(e, &self.limits))?;
        tracing::debug!(policy = %self.name, elapsed_us = started.elapsed().as_micros() as u64, "settings validated");
        answer.map_err(Failure::BadSettings)
    }
}
