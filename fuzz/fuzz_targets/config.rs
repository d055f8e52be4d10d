//! The config loader (`gateway/src/config`: `from_yaml`, i.e. serde structs + validation).
//!
//! Properties, for any text:
//! 1. It returns: a `Config` or a `ConfigError`, never a panic (nor a hang: libFuzzer's timeout).
//! 2. Errors say where: a YAML error carries a line and column inside the text (1-based) and shows them as
//!    `path:line:column: message`; a validation error names the field; no message is empty.
//! 3. Deterministic: loading the same text twice gives the same answer.
//!
//! Inputs whose strings could name device or proc files (the loader reads files a config points to, e.g.
//! `token_file: /dev/zero`) are skipped: reading those is the operator's choice, not a parser bug.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mcp_gateway::config::{self, ConfigError};

fn names_a_special_file(v: &serde_yaml_ng::Value) -> bool {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) => ["dev", "proc", "sys", "..", "fd"]
            .iter()
            .any(|w| s.contains(w)),
        Value::Sequence(items) => items.iter().any(names_a_special_file),
        Value::Mapping(m) => m
            .iter()
            .any(|(k, v)| names_a_special_file(k) || names_a_special_file(v)),
        Value::Tagged(t) => names_a_special_file(&t.value),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Strings are only ever read from a document that parses; if it does not, no file is opened.
    if let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
        && names_a_special_file(&v)
    {
        return;
    }
    let path = Path::new("/nonexistent-fuzz/config.yaml");
    let first = config::from_yaml(text, path);
    let second = config::from_yaml(text, path);
    assert_eq!(
        first.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        second.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        "not deterministic"
    );
    let Err(e) = first else {
        return;
    };
    let shown = e.to_string();
    match &e {
        ConfigError::Syntax {
            location, message, ..
        } => {
            assert!(!message.trim().is_empty(), "empty message: {shown}");
            let Some((line, col)) = *location else {
                panic!("YAML error without a position: {shown}");
            };
            // Line breaks as the YAML parser (libyaml) counts them: LF, CR, CRLF, NEL, LS, PS.
            let lines = text
                .replace("\r\n", "\n")
                .chars()
                .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
                .count()
                + 1;
            assert!(
                line >= 1 && line <= lines + 1 && col >= 1,
                "position {line}:{col} outside a {lines}-line text: {shown}"
            );
            assert!(
                shown.starts_with(&format!("{}:{line}:{col}: ", path.display())),
                "{shown}"
            );
        }
        ConfigError::Invalid { field, message, .. } => {
            assert!(!field.trim().is_empty(), "no field named: {shown}");
            assert!(!message.trim().is_empty(), "empty message: {shown}");
        }
        ConfigError::Read { .. } => panic!("from_yaml read a file: {shown}"),
    }
});
