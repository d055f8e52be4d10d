//! The tool catalogue of a route: what the upstream's `tools/list` said about each tool (annotations with
//! spec defaults, input schema), learned from listings passing through — and fetched by the gateway itself
//! when a `tools/call` names a tool it has not seen — so policies and argument validation always have it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::OnToolChange;
use crate::pins::{Block, Pins};
use crate::policy::bindings::types::ToolInfo;
use crate::policy::view;

/// How long after a fetch a still-unknown tool does not trigger another one.
const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// One listed tool.
#[derive(Debug)]
pub struct Tool {
    pub info: ToolInfo,
    /// The `inputSchema` as listed.
    pub schema: Option<Value>,
    /// Compiled once, on first use. `Err` when the schema itself is unusable (say, a remote `$ref`).
    validator: OnceLock<Result<jsonschema::Validator, String>>,
}

impl Tool {
    pub fn validator(&self) -> Option<&Result<jsonschema::Validator, String>> {
        let schema = self.schema.as_ref()?;
        Some(
            self.validator
                .get_or_init(|| jsonschema::validator_for(schema).map_err(|e| e.to_string())),
        )
    }
}

#[derive(Debug, Default)]
pub struct Catalogue {
    tools: RwLock<HashMap<String, Arc<Tool>>>,
    last_fetch: Mutex<Option<Instant>>,
    /// The route's tool pins (`pins.rs`): every listing learned is compared with them.
    guard: RwLock<Option<Guard>>,
}

/// The pins a route's catalogue answers to, under the route's key and `on_tool_change`.
#[derive(Debug, Clone)]
pub struct Guard {
    pub pins: Arc<Pins>,
    pub route: String,
    pub mode: OnToolChange,
}

impl Catalogue {
    /// Compares what this catalogue learns with `guard`'s pins from now on (set for each config generation).
    pub fn set_guard(&self, guard: Option<Guard>) {
        *self.guard.write().expect("catalogue lock") = guard;
    }

    fn guard(&self) -> Option<Guard> {
        self.guard.read().expect("catalogue lock").clone()
    }

    /// What a call of `tool` meets because of a pending definition change, if anything.
    pub fn blocked(&self, tool: &str) -> Option<Block> {
        let g = self.guard.read().expect("catalogue lock");
        let g = g.as_ref()?;
        g.pins.block(&g.route, g.mode, tool)
    }

    /// The tools whose changed definition waits for an operator (hidden from listings), unless the route
    /// records changes.
    pub fn pending(&self) -> Vec<String> {
        match self.guard() {
            Some(g) if g.mode != OnToolChange::Record => g.pins.pending_names(&g.route),
            _ => Vec::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Tool>> {
        self.tools
            .read()
            .expect("catalogue lock")
            .get(name)
            .cloned()
    }

    /// Records the tools of one `tools/list` page (a later listing replaces an earlier entry of the same name).
    pub fn learn(&self, tools: &[Value]) -> Vec<ToolInfo> {
        if let Some(g) = self.guard() {
            g.pins.observe(&g.route, g.mode, tools);
        }
        let mut infos = Vec::with_capacity(tools.len());
        let mut map = self.tools.write().expect("catalogue lock");
        for t in tools {
            let Some(info) = view::tool_info(t) else {
                continue;
            };
            let unchanged = map.get(&info.name).is_some_and(|old| old.info == info);
            if !unchanged {
                let tool = Tool {
                    info: info.clone(),
                    schema: t.get("inputSchema").cloned(),
                    validator: OnceLock::new(),
                };
                map.insert(info.name.clone(), Arc::new(tool));
            }
            infos.push(info);
        }
        infos
    }

    /// Whether a miss should make the gateway fetch the list now (at most once per [`REFETCH_AFTER`]).
    pub fn claim_fetch(&self) -> bool {
        let mut last = self.last_fetch.lock().expect("catalogue lock");
        if last.is_some_and(|t| t.elapsed() < REFETCH_AFTER) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    pub fn len(&self) -> usize {
        self.tools.read().expect("catalogue lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
