//! Inputs the fuzz targets (`fuzz/fuzz_targets/`, run by `tests/fuzz.sh`) found, each kept as a test of the
//! property it broke.

use mcp_gateway::mcp::sse::{self, EventSplitter};

/// Every event (and the unterminated rest) of `stream` fed in `chunk`-byte pieces.
fn events(stream: &[u8], chunk: usize) -> Vec<bytes::Bytes> {
    let mut s = EventSplitter::default();
    let mut out = Vec::new();
    for c in stream.chunks(chunk) {
        s.push(c);
        while let Some(e) = s.next_event() {
            out.push(e);
        }
    }
    out.extend(s.finish());
    out
}

const LISTING: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search_docs"},{"name":"delete_customer"}]}}"#;

/// fuzz target `sse`: a stream that starts with a UTF-8 BOM. Clients (WHATWG event stream; the Python and
/// TypeScript SDKs' parsers) ignore one leading BOM and read the first event's data; the splitter kept the BOM
/// at the start of the first event, so `sse::data` saw a field named "\u{feff}data", read no data, and the
/// filter passed the event unread: a `tools/list` answer reached the client unfiltered.
#[test]
fn sse_leading_bom_is_not_part_of_the_first_event() {
    let stream = format!("\u{feff}id: 1\ndata: {LISTING}\n\n");
    for chunk in [stream.len(), 1, 2] {
        let evs = events(stream.as_bytes(), chunk);
        assert_eq!(evs.concat(), stream.as_bytes(), "lossless, BOM included");
        let data: Vec<String> = evs.iter().filter_map(|e| sse::data(e)).collect();
        assert_eq!(data, [LISTING], "chunks of {chunk}: {evs:?}");
    }
    // Only one BOM is ignored: behind it a second one is part of the field name, for a client too.
    let double = format!("\u{feff}\u{feff}data: {LISTING}\n\n");
    let evs = events(double.as_bytes(), 1);
    assert_eq!(evs.concat(), double.as_bytes());
    assert!(evs.iter().all(|e| sse::data(e).is_none()), "{evs:?}");
    // A stream that is only part of a BOM is passed on as it came.
    assert_eq!(events(b"\xef\xbb", 1).concat(), b"\xef\xbb");
}

/// Found by fuzz target `config`: a text with a second YAML document was refused with no position, so the
/// operator could not tell where the problem is. It now points at the second document's `---`.
#[test]
fn config_with_a_second_yaml_document_names_its_line() {
    let text = "listen_addr: 127.0.0.1:0\nroutes: {}\n---\nlisten_addr: x\n";
    let e = mcp_gateway::config::from_yaml(text, std::path::Path::new("c.yaml")).unwrap_err();
    match &e {
        mcp_gateway::config::ConfigError::Syntax { location, .. } => {
            assert_eq!(*location, Some((3, 1)), "{e}")
        }
        other => panic!("not a syntax error: {other}"),
    }
    assert!(e.to_string().starts_with("c.yaml:3:1: "), "{e}");
}
