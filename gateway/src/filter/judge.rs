//! One upstream answer, judged by what it contains (not by what was asked): a JSON-RPC message or a batch of
//! them, from a JSON body or one SSE event. Listings anywhere are filtered, requests of the server are
//! policed, element by element.

use serde_json::Value;

use super::ResponseFilter;

/// What judging did to a value.
#[derive(Debug, Default)]
pub struct Judged {
    /// It was rewritten (a listing filtered, an element withheld): serialise it again.
    pub changed: bool,
    /// Nothing of it may reach the client (a refused server request, or a batch of nothing else).
    pub withheld: bool,
    /// It carried a listing.
    pub listing: bool,
    /// The ids (as JSON text) of the responses it carries.
    pub answered: Vec<String>,
}

/// Judges `v` in place.
pub async fn judge(v: &mut Value, f: &ResponseFilter) -> Judged {
    let mut j = Judged::default();
    match v {
        Value::Array(items) => {
            let before = items.len();
            let mut keep = Vec::with_capacity(before);
            for mut item in std::mem::take(items) {
                if message(&mut item, f, &mut j).await {
                    keep.push(item);
                }
            }
            j.changed |= keep.len() != before;
            j.withheld = before > 0 && keep.is_empty();
            *items = keep;
        }
        _ => j.withheld = !message(v, f, &mut j).await,
    }
    j
}

/// Judges one message; `false` when it must be withheld.
async fn message(v: &mut Value, f: &ResponseFilter, j: &mut Judged) -> bool {
    let Value::Object(o) = v else {
        return true; // not a message: nothing in it a client would act on
    };
    if o.contains_key("method") {
        if !o.contains_key("id") {
            return true; // a notification
        }
        if !f.police.allows(v).await {
            return false;
        }
        // Sampling may hand the client's model tool definitions: the hidden ones go, as from a listing.
        if let Some(tools) = v.pointer_mut("/params/tools").and_then(Value::as_array_mut) {
            let before = tools.len();
            f.listing.tools(tools, false).await;
            j.changed |= tools.len() != before;
        }
        return true;
    }
    if let Some(id) = o.get("id") {
        j.answered.push(id.to_string());
    }
    if let Some(result) = o.get_mut("result").filter(|r| r.is_object())
        && f.listing.filter_result(result).await
    {
        j.listing = true;
        j.changed = true;
    }
    true
}
