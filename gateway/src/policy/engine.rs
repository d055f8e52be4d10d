//! The one wasmtime `Engine` of the process: component model, pooling allocator, epoch interruption (a
//! ticker thread advances the epoch every [`EPOCH_TICK`]), optional fuel; a compile cache on disk keyed by the
//! engine's compatibility hash and the module's SHA-256; and the bound on concurrent evaluations.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::Policy;
use super::host::StoreState;
use crate::config::{MAX_MODULE_MEMORY_MB, PolicyConfig};

/// Epoch granularity: deadlines are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Bytes of each linear memory (and table) kept resident when a slot is recycled. A Rust guest's stack
/// top, data and first heap pages lie in its first ~1.5 MiB, which is all an evaluation normally touches.
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Instances the pooling allocator keeps slots for (evaluations in flight, plus load-time checks).
const POOL_INSTANCES: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot create the wasm engine: {0:#}")]
    Create(wasmtime::Error),
    #[error("cannot compile {path}: {source:#}")]
    Compile {
        path: PathBuf,
        #[source]
        source: wasmtime::Error,
    },
}

pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<StoreState>,
    cache_dir: Option<PathBuf>,
    fuel: bool,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("cache_dir", &self.cache_dir)
            .field("fuel", &self.fuel)
            .finish()
    }
}

impl PolicyEngine {
    pub fn new(policies: &PolicyConfig) -> Result<Arc<Self>, EngineError> {
        let fuel = policies.modules.iter().any(|m| m.limits.fuel.is_some());
        let max_memory = policies
            .modules
            .iter()
            .map(|m| m.limits.memory_bytes)
            .max()
            .unwrap_or(16 << 20);
        Self::build(
            fuel,
            max_memory,
            policies.cache_dir.clone(),
            policies.max_concurrency,
        )
    }

    /// An engine for one-off use (the `policy` CLI).
    pub fn standalone(fuel: bool, max_memory_bytes: u64) -> Result<Arc<Self>, EngineError> {
        Self::build(fuel, max_memory_bytes, None, 1)
    }

    fn build(
        fuel: bool,
        max_memory: u64,
        cache_dir: Option<PathBuf>,
        concurrency: usize,
    ) -> Result<Arc<Self>, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            // Recycling a slot: with the kernel's PAGEMAP_SCAN (Linux ≥ 6.7; `Auto` falls back elsewhere) only
            // the pages an evaluation dirtied are reset, with memset, and stay resident — no madvise and no
            // page faults for the next instance. Measured: instance drop 9 → 3 µs, first call 11 → 5 µs.
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
            .table_keep_resident(KEEP_RESIDENT_TABLE)
            .pagemap_scan(wasmtime::Enabled::Auto)
            // Slots are sized for the largest module's cap (at least 1 MiB more than any limit so the limiter,
            // not the pool, is what refuses growth and the failure is reported as the policy's memory limit).
            .max_memory_size(
                usize::try_from(max_memory.min(MAX_MODULE_MEMORY_MB << 20) + (1 << 20))
                    .unwrap_or(usize::MAX),
            );
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(fuel)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_reservation(max_memory.min(MAX_MODULE_MEMORY_MB << 20) + (2 << 20))
            .memory_guard_size(64 << 10)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&cfg).map_err(EngineError::Create)?;
        let mut linker = Linker::<StoreState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(EngineError::Create)?;
        // The guests' monotonic clock is stopped and never waits (policy/host.rs): it replaces wasmtime-wasi's.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<
            StoreState,
            super::host::FrozenMonotonic,
        >(&mut linker, StoreState::frozen_monotonic)
        .map_err(EngineError::Create)?;
        linker.allow_shadowing(false);
        Policy::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(
            &mut linker,
            |s| s,
        )
        .map_err(EngineError::Create)?;
        spawn_ticker(&engine);
        let cache_dir =
            cache_dir.or_else(|| Some(std::env::temp_dir().join("mcp-gateway-policy-cache")));
        Ok(Arc::new(PolicyEngine {
            engine,
            linker,
            cache_dir,
            fuel,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<StoreState> {
        &self.linker
    }

    pub fn fuel_enabled(&self) -> bool {
        self.fuel
    }

    pub fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// Compiles a component, or loads it from the cache when this engine compiled the same bytes before.
    /// Returns whether the cache was used.
    pub fn compile(
        &self,
        path: &Path,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, bool), EngineError> {
        let compile = || {
            Component::new(&self.engine, bytes).map_err(|source| EngineError::Compile {
                path: path.to_owned(),
                source,
            })
        };
        let Some(dir) = self.cache_dir.as_deref().and_then(usable_cache_dir) else {
            return Ok((compile()?, false));
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let file = dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()));
        let digest_file = file.with_extension("cwasm.sha256");
        if let (Ok(artifact), Ok(expected)) =
            (std::fs::read(&file), std::fs::read_to_string(&digest_file))
        {
            if hex::encode(Sha256::digest(&artifact)) == expected.trim() {
                #[allow(unsafe_code)]
                // SAFETY: `Component::deserialize` requires bytes produced by `Engine::precompile_component` of a
                // compatible engine. The file name carries this engine's compatibility hash and the source
                // module's SHA-256, the artifact matches the digest written beside it (so it is whole and
                // unmodified since we wrote it), and the directory is the gateway's own: created 0700, and
                // refused by `usable_cache_dir` when owned by another user or writable by others.
                let loaded = unsafe { Component::deserialize(&self.engine, &artifact) };
                if let Ok(component) = loaded {
                    return Ok((component, true));
                }
            }
            tracing::warn!(file = %file.display(), "ignoring an unusable cached policy artifact; recompiling");
        }
        let artifact =
            self.engine
                .precompile_component(bytes)
                .map_err(|source| EngineError::Compile {
                    path: path.to_owned(),
                    source,
                })?;
        let written = write_atomic(&file, &artifact).and_then(|()| {
            write_atomic(
                &digest_file,
                hex::encode(Sha256::digest(&artifact)).as_bytes(),
            )
        });
        if let Err(e) = written {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the policy compile cache");
        }
        #[allow(unsafe_code)]
        // SAFETY: `artifact` was produced just now by `precompile_component` on this very engine.
        let component =
            unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(|source| {
                EngineError::Compile {
                    path: path.to_owned(),
                    source,
                }
            })?;
        Ok((component, false))
    }
}

/// The cache directory if it is ours alone (created 0700 when missing).
fn usable_cache_dir(dir: &Path) -> Option<&Path> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if !dir.exists() {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    let meta = std::fs::metadata(dir).ok()?;
    let ours = meta.is_dir()
        && meta.uid() == rustix::process::getuid().as_raw()
        && meta.mode() & 0o022 == 0;
    if !ours {
        tracing::warn!(dir = %dir.display(), "policy cache directory is not private to this user; compiling without cache");
    }
    ours.then_some(dir)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Advances the engine's epoch every tick until the engine is dropped.
fn spawn_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch ticker thread");
}
