//! [`Json`]: a JSON document as the gateway sent it, parsed the first time a policy looks at it.
//!
//! Most policies decide from the method and the tool name; parsing `params`, `arguments` and input schemas
//! up front for every evaluation would be most of their work. A `Json` dereferences to
//! [`serde_json::Value`], so `call.arguments.pointer("/amount")` or `request.params()["name"]` read as
//! before; the text is parsed once, on first use.
//!
//! The gateway serialises these documents itself, so they are always valid JSON. Should one not be, reading
//! it panics: the component traps and the gateway fails closed (deny), rather than a policy deciding on a
//! document it could not read.

use serde_json::Value;
use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

pub struct Json {
    /// The text as received, when the document came from the gateway.
    text: Option<Box<str>>,
    /// `what` names the field in the panic message should parsing ever fail.
    what: &'static str,
    value: OnceLock<Value>,
}

impl Json {
    /// A document received as text (`what` names it for the panic message if it is not JSON).
    pub fn from_text(what: &'static str, text: impl Into<Box<str>>) -> Json {
        Json {
            text: Some(text.into()),
            what,
            value: OnceLock::new(),
        }
    }

    /// The parsed document.
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| {
            let text = self.text.as_deref().unwrap_or("null");
            serde_json::from_str(text).unwrap_or_else(|e| {
                panic!("the gateway sent `{}` that is not JSON: {e}", self.what)
            })
        })
    }

    /// Whether the document has been parsed (for tests of laziness).
    pub fn is_parsed(&self) -> bool {
        self.value.get().is_some()
    }
}

impl From<Value> for Json {
    fn from(value: Value) -> Json {
        Json {
            text: None,
            what: "value",
            value: OnceLock::from(value),
        }
    }
}

impl Deref for Json {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value()
    }
}

impl Clone for Json {
    fn clone(&self) -> Json {
        match self.value.get() {
            Some(v) => Json::from(v.clone()),
            None => Json {
                text: self.text.clone(),
                what: self.what,
                value: OnceLock::new(),
            },
        }
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.value() == other.value()
    }
}

impl PartialEq<Value> for Json {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.value(), f)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.value(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_on_first_use_only() {
        let j = Json::from_text("params", r#"{"name": "x", "n": [1, 2]}"#);
        assert!(!j.is_parsed());
        assert_eq!(j["name"], "x");
        assert!(j.is_parsed());
        assert_eq!(j.pointer("/n/1"), Some(&json!(2)));
        assert_eq!(j, json!({"name": "x", "n": [1, 2]}));
    }

    #[test]
    fn values_and_texts_compare_by_content() {
        let a = Json::from_text("a", r#"{"b": 1, "a": 2}"#);
        let b = Json::from(json!({"a": 2, "b": 1}));
        assert_eq!(a, b);
        assert_eq!(a.clone(), b.clone());
        assert_ne!(a, Json::from(json!({})));
    }

    #[test]
    #[should_panic(expected = "the gateway sent `tool-call.arguments` that is not JSON")]
    fn malformed_text_panics_when_read() {
        let j = Json::from_text("tool-call.arguments", "{nope");
        let _ = j.get("x");
    }
}
