//! Listings — `tools`, `resources`, `resourceTemplates`, `prompts` (every page, JSON or SSE, single or
//! batched): the route's catalogue learns every tool listed, the entries the chain hides are removed, and modern results are marked `cacheScope: "private"` (the list
//! depends on who asked). An entry the gateway cannot read (no string name) is removed too: what is not
//! decided on is not shown.

use std::sync::Arc;

use serde_json::Value;

use crate::catalogue::Catalogue;
use crate::policy::PolicyChain;
use crate::policy::bindings::types::{Listing as WitListing, RequestContext};
use crate::policy::view;

/// The other listings: the result key, the field that names an entry, and how the chain is asked.
type Read = fn(&[Value]) -> WitListing;
const OTHER_LISTINGS: &[(&str, &str, Read)] = &[
    ("resources", "uri", |e| {
        WitListing::Resources(e.iter().filter_map(view::resource_info).collect())
    }),
    ("resourceTemplates", "uriTemplate", |e| {
        WitListing::ResourceTemplates(e.iter().filter_map(view::resource_template_info).collect())
    }),
    ("prompts", "name", |e| {
        WitListing::Prompts(e.iter().filter_map(view::prompt_info).collect())
    }),
];

/// What filtering a route's listings needs.
#[derive(Clone)]
pub struct Listing {
    pub chain: PolicyChain,
    pub catalogue: Arc<Catalogue>,
    pub context: RequestContext,
    pub modern: bool,
}

impl Listing {
    /// Filters every listing a JSON-RPC `result` carries; returns whether it carried one.
    pub async fn filter_result(&self, result: &mut Value) -> bool {
        let mut had = false;
        if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
            self.tools(tools, true).await;
            had = true;
        }
        for (key, id, read) in OTHER_LISTINGS {
            if let Some(entries) = result.get_mut(*key).and_then(Value::as_array_mut) {
                self.entries(entries, id, *read).await;
                had = true;
            }
        }
        if had && self.modern {
            result["cacheScope"] = Value::String("private".into());
        }
        had
    }

    /// Removes the hidden (and unreadable) entries of a resource, template or prompt listing.
    async fn entries(&self, entries: &mut Vec<Value>, id: &str, read: Read) {
        let hidden = self.chain.hidden(self.context.clone(), read(entries)).await;
        let before = entries.len();
        entries.retain(|e| {
            e.get(id)
                .and_then(Value::as_str)
                .is_some_and(|n| !hidden.contains(n))
        });
        if before != entries.len() {
            tracing::debug!(request_id = %self.context.request_id, hidden = before - entries.len(), listing = id, "entries hidden from a listing");
        }
    }

    /// Removes hidden (and unreadable) tool definitions; `learn` records the rest in the catalogue (a
    /// listing does, the tool definitions a server puts in its own requests do not).
    pub async fn tools(&self, tools: &mut Vec<Value>, learn: bool) {
        let infos = if learn {
            self.catalogue.learn(tools)
        } else {
            tools
                .iter()
                .filter_map(crate::policy::view::tool_info)
                .collect()
        };
        let mut hidden = self.chain.hidden_tools(self.context.clone(), infos).await;
        if learn {
            // A tool whose definition changed since it was pinned stays hidden until it is accepted.
            hidden.extend(self.catalogue.pending());
        }
        let before = tools.len();
        tools.retain(|t| {
            t.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !hidden.contains(n))
        });
        if before != tools.len() {
            tracing::debug!(request_id = %self.context.request_id, hidden = before - tools.len(), "tools hidden from a listing");
        }
    }
}
