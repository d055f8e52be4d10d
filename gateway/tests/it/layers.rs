//! The layer order of `ARCHITECTURE.md` ("Layers"), checked against the code: every `gateway/src` file's
//! `crate::…` paths (in `use` lines and inline, `crate::{a, b}` groups included) and the `super::…` paths
//! that leave the file's top-level module are read as text (comments and string literals skipped) into a
//! graph between top-level modules (a folder module counts as one). The test fails when a module imports
//! one of a higher layer, when two modules import each other through any chain (an import circle), when a
//! module is missing from the order, and when an entry of `KNOWN_UPWARD` no longer occurs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import modules of its own layer (as long as no circle appears)
/// and of every layer below it, never one above. Keep in step with ARCHITECTURE.md's "Layers".
const LAYERS: &[&[&str]] = &[
    // 0: plain leaves that anything may import
    &[
        "config",
        "body",
        "error_class",
        "outbound",
        "tunnel",
        "certs",
        "pg",
    ],
    // 1: counters, spans, the body pass-through
    &["metrics", "otel", "body_watch"],
    // 2: the audit log engine (writer, chain, record, verify, query)
    &["audit"],
    // 3: the early request stages and what they share
    &["tls", "route", "identity", "upstream_gate", "mcp", "pins"],
    // 4: the per-request context (carries the principal, the parsed message, the trace)
    &["ctx"],
    // 5: the tool catalogue and argument validation
    &["catalogue", "arguments"],
    // 6: the policy chain
    &["policy"],
    // 7: the audit stage (decision → durable `Recorded`, refusals, the outcome watcher)
    &["audit_stage"],
    // 8: forwarding to the upstream
    &["forward"],
    // 9: the answer filter
    &["filter"],
    // 10: the sum of the stages' errors and its one classification
    &["error"],
    // 11: logs, and the wire mapping of every error and policy answer
    &["telemetry", "reply"],
    // 12: the way out for one permitted call (audit, forward, filter, outcome)
    &["egress"],
    // 13: approvals (held and confirmed calls, handed to egress once released)
    &["approvals"],
    // 14: the orchestrator
    &["pipeline"],
    // 15: the serving generation and the admin listener
    &["reload", "admin"],
    // 16: the server
    &["server"],
    // 17: the binary's front ends
    &["demo", "cli"],
];

/// Upward imports that the code still has today, each `(importer, imported)`. Issue 13 removes them; the
/// list may only shrink: the test fails on an upward import missing here and on an entry that no longer
/// occurs (delete it then). Circles are looked for among the imports not listed here.
const KNOWN_UPWARD: &[(&str, &str)] = &[
    // the answer filter's JSON-RPC error code for a withheld server request (`reply::POLICY_DENIED`)
    ("filter", "reply"),
    // the catalogue stores the WIT `ToolInfo` and builds it with `policy::view`
    ("catalogue", "policy"),
    // metrics name what they count by the types that produce it
    ("metrics", "audit"),
    ("metrics", "forward"),
    // `Permitted` stores approvals' proofs
    ("policy", "approvals"),
    // `reply::approval_answer` reads the held call
    ("reply", "approvals"),
];

#[test]
fn every_import_points_down_and_none_closes_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = module_graph(&src);
    let layer_of = layer_index();
    let mut problems = Vec::new();

    for module in top_level_modules(&src) {
        if !layer_of.contains_key(module.as_str()) {
            problems.push(format!(
                "module `{module}` is in no layer: add it to LAYERS (and ARCHITECTURE.md)"
            ));
        }
    }
    for name in layer_of.keys() {
        if !src.join(format!("{name}.rs")).exists() && !src.join(name).join("mod.rs").exists() {
            problems.push(format!(
                "LAYERS names `{name}`, which is no module of gateway/src"
            ));
        }
    }

    let known: BTreeSet<(&str, &str)> = KNOWN_UPWARD.iter().copied().collect();
    let mut seen_known = BTreeSet::new();
    for ((from, to), at) in &edges {
        let (Some(&lf), Some(&lt)) = (layer_of.get(from.as_str()), layer_of.get(to.as_str()))
        else {
            continue;
        };
        if lt > lf {
            if known.contains(&(from.as_str(), to.as_str())) {
                seen_known.insert((from.as_str(), to.as_str()));
            } else {
                problems.push(format!(
                    "`{from}` (layer {lf}) imports `{to}` (layer {lt}), a higher layer, at {at}"
                ));
            }
        }
    }
    for entry in &known {
        if !seen_known.contains(entry) {
            problems.push(format!(
                "KNOWN_UPWARD lists `{}` -> `{}`, which no longer occurs: delete the entry",
                entry.0, entry.1
            ));
        }
    }

    let graph: BTreeMap<&str, BTreeSet<&str>> = {
        let mut g: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (from, to) in edges.keys() {
            if !known.contains(&(from.as_str(), to.as_str())) {
                g.entry(from.as_str()).or_default().insert(to.as_str());
            }
        }
        g
    };
    for circle in circles(&graph) {
        let ties: Vec<String> = edges
            .iter()
            .filter(|((f, t), _)| circle.contains(f.as_str()) && circle.contains(t.as_str()))
            .filter(|((f, t), _)| !known.contains(&(f.as_str(), t.as_str())))
            .map(|((f, t), at)| format!("{f} -> {t} ({at})"))
            .collect();
        problems.push(format!(
            "import circle between {:?}: {}",
            circle,
            ties.join(", ")
        ));
    }

    assert!(
        problems.is_empty(),
        "the layering of gateway/src is broken:\n  {}",
        problems.join("\n  ")
    );
}

/// The test reads what it means to read: `crate::` groups, inline paths and escaping `super::` paths.
#[test]
fn import_reader_finds_crate_and_super_paths_and_skips_comments_and_strings() {
    let text = r####"
        use crate::{alpha::A, beta, gamma::{x, y}};
        use crate::delta::D;
        // crate::commented::Out
        /* crate::block /* nested */ crate::still_comment */
        const S: &str = "crate::in_string";
        const R: &str = r#"crate::in_raw "# ;
        fn f<'a>(c: char) -> &'a str { let _ = '"'; crate::epsilon::call(); super::zeta::Z }
        mod tests { use super::*; use super::super::eta; }
    "####;
    let mut found: Vec<String> = imports_of(text, 1).into_iter().map(|(m, _)| m).collect();
    found.sort();
    assert_eq!(
        found,
        ["alpha", "beta", "delta", "epsilon", "eta", "gamma", "zeta"]
    );
    // In a file one level down (`a/b.rs`), a single `super::` stays inside `a`.
    assert!(imports_of("use super::sibling;", 2).is_empty());
}

fn layer_index() -> BTreeMap<&'static str, usize> {
    let mut index = BTreeMap::new();
    for (i, layer) in LAYERS.iter().enumerate() {
        for name in *layer {
            assert!(
                index.insert(*name, i).is_none(),
                "`{name}` stands in two layers"
            );
        }
    }
    index
}

fn top_level_modules(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(src).expect("read gateway/src") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if path.join("mod.rs").exists() {
                out.push(name);
            }
        } else if let Some(stem) = name.strip_suffix(".rs")
            && stem != "lib"
            && stem != "main"
        {
            out.push(stem.to_owned());
        }
    }
    out.sort();
    out
}

/// `(importer, imported)` → the first place (file:line) that makes the edge.
fn module_graph(src: &Path) -> BTreeMap<(String, String), String> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let mut edges = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.len() == 1 && (parts[0] == "lib.rs" || parts[0] == "main.rs") {
            continue;
        }
        let top = parts[0].trim_end_matches(".rs").to_owned();
        // The file's module path length: `a.rs` and `a/mod.rs` are one deep, `a/b.rs` two, …
        let depth = if parts.last().map(String::as_str) == Some("mod.rs") {
            parts.len() - 1
        } else {
            parts.len()
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        for (module, line) in imports_of(&text, depth) {
            if module != top && module != "self" && module != "super" {
                edges
                    .entry((top.clone(), module))
                    .or_insert_with(|| format!("{}:{line}", rel.display()));
            }
        }
    }
    edges
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's text names through `crate::` (and `super::` paths that climb out of
/// its top-level module), each with the line it is named on. `depth` is the file's module path length.
fn imports_of(text: &str, depth: usize) -> Vec<(String, usize)> {
    let code = strip_comments_and_strings(text);
    let b = code.as_bytes();
    let mut out = Vec::new();
    // Inline `mod name {` blocks deepen `super::`; each entry is the brace depth its body opened at.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    let line_at = |pos: usize| code[..pos].bytes().filter(|&c| c == b'\n').count() + 1;
    while i < b.len() {
        match b[i] {
            b'{' => {
                braces += 1;
                i += 1;
                continue;
            }
            b'}' => {
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
                braces = braces.saturating_sub(1);
                i += 1;
                continue;
            }
            _ => {}
        }
        if !is_ident(b[i]) || (i > 0 && is_ident(b[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let word = &code[start..i];
        if word == "mod" {
            let mut j = skip_ws(b, i);
            let name_start = j;
            while j < b.len() && is_ident(b[j]) {
                j += 1;
            }
            if j > name_start && skip_ws(b, j) < b.len() && b[skip_ws(b, j)] == b'{' {
                inline_mods.push(braces + 1);
            }
            continue;
        }
        let after_root = if word == "crate" {
            path_sep(b, i)
        } else if word == "super" {
            let mut supers = 1;
            let mut j = i;
            loop {
                let Some(next) = path_sep(b, j) else {
                    break None;
                };
                let k = skip_ws(b, next);
                if code[k..].starts_with("super") && !b.get(k + 5).copied().is_some_and(is_ident) {
                    supers += 1;
                    j = k + 5;
                    continue;
                }
                if supers >= depth + inline_mods.len() {
                    break Some(next);
                }
                break None;
            }
        } else {
            None
        };
        let Some(next) = after_root else { continue };
        let k = skip_ws(b, next);
        if k < b.len() && b[k] == b'{' {
            for first in group_heads(&code[k..]) {
                out.push((first, line_at(start)));
            }
        } else {
            let mut e = k;
            while e < b.len() && is_ident(b[e]) {
                e += 1;
            }
            if e > k {
                out.push((code[k..e].to_owned(), line_at(start)));
            }
        }
    }
    out
}

/// The first segment of each item of a `{a::b, c, d::{e}}` group (text starts at its `{`).
fn group_heads(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => {
                depth += 1;
                if depth == 1 {
                    expect_head = true;
                }
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect_head = true,
            c if depth == 1 && expect_head && is_ident(c) => {
                let s = i;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                heads.push(text[s..i].to_owned());
                expect_head = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The position after `::` when one follows `i` (white space allowed around it).
fn path_sep(b: &[u8], i: usize) -> Option<usize> {
    let j = skip_ws(b, i);
    (b.get(j) == Some(&b':') && b.get(j + 1) == Some(&b':')).then_some(j + 2)
}

/// The text with comments and string/char literals blanked (line breaks kept, so lines still count).
fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }))
    };
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && is_ident(b[i - 1]);
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            let end = text[i..].find('\n').map_or(b.len(), |e| i + e);
            blank(&mut out, &b[i..end]);
            i = end;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let (mut j, mut nest) = (i + 2, 1);
            while j < b.len() && nest > 0 {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    nest += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    nest -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &b[i..j]);
            i = j;
        } else if c == b'r' && !prev_ident
            || (c == b'b' && b.get(i + 1) == Some(&b'r') && !prev_ident)
        {
            // A raw string `r#"…"#` (or `br…`); anything else starting with r/b is an identifier.
            let mut j = if c == b'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) == Some(&b'"') {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let body = j + 1;
                let end = b[body..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| body + p + close.len());
                blank(&mut out, &b[i..end]);
                i = end;
            } else {
                out.push(c);
                i += 1;
            }
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&mut out, &b[i..end]);
            i = end;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only the former is skipped.
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                blank(&mut out, &b[i..(j + 1).min(b.len())]);
                i = j + 1;
            } else {
                let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                if b.get(i + 1 + ch_len) == Some(&b'\'') {
                    blank(&mut out, &b[i..i + 2 + ch_len]);
                    i += 2 + ch_len;
                } else {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 boundaries")
}

/// Every strongly connected set of more than one module (Tarjan), each sorted.
fn circles<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<BTreeSet<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<BTreeSet<&'a str>>,
    }
    fn visit<'a>(v: &'a str, g: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in g.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut set = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                set.insert(w);
                if w == v {
                    break;
                }
            }
            if set.len() > 1 {
                s.out.push(set);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, graph, &mut s);
        }
    }
    s.out
}
