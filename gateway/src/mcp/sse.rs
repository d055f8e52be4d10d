//! Server-Sent Events framing, incrementally: split a byte stream into events (blank-line separated, any of
//! `\n`, `\r\n`, `\r` line ends), read an event's `data`, and rewrite it while keeping `id:`, `event:`,
//! `retry:` and comments as they were.

use bytes::{Bytes, BytesMut};

/// The UTF-8 byte order mark a stream may start with; clients ignore one (WHATWG HTML §9.2.6).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Accumulates bytes and yields whole events (including their terminating blank line).
///
/// A leading BOM is yielded on its own, before the first event: it is forwarded as it came (so the client
/// ignores the same one), and the first event's first field is read without it, as a client reads it.
#[derive(Debug, Default)]
pub struct EventSplitter {
    buf: BytesMut,
    /// Whether the stream's first bytes are known (a BOM, or not one).
    started: bool,
}

impl EventSplitter {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Option<Bytes> {
        if !self.started {
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                return None; // may still become a BOM
            }
            self.started = true;
            if self.buf.starts_with(BOM) {
                return Some(self.buf.split_to(BOM.len()).freeze());
            }
        }
        let end = find_event_end(&self.buf)?;
        Some(self.buf.split_to(end).freeze())
    }

    /// Whatever is left when the stream ends (an unterminated last event).
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// Index just past the blank line that ends the first event.
fn find_event_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut line_start = 0;
    while i < b.len() {
        let eol = match b[i] {
            b'\n' => 1,
            b'\r' if b.get(i + 1) == Some(&b'\n') => 2,
            b'\r' if i + 1 < b.len() => 1,
            b'\r' => return None, // a lone CR at the end may be the first half of CRLF
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start {
            return Some(i + eol); // an empty line: the event ends here
        }
        i += eol;
        line_start = i;
    }
    None
}

fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .flat_map(|l| l.split(|&c| c == b'\r'))
}

/// The values of the event's `name` fields, in order (`name: v`, `name:v` and a bare `name`; a field whose
/// name merely starts with `name`, e.g. `database`, is not one).
fn field_values<'a>(event: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    lines(event).filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        match rest.first() {
            None => Some(rest),
            Some(b':') => Some(rest[1..].strip_prefix(b" ").unwrap_or(&rest[1..])),
            Some(_) => None,
        }
    })
}

/// The event's data (its `data:` lines joined with `\n`), if it has any.
pub fn data(event: &[u8]) -> Option<String> {
    let mut out: Option<String> = None;
    for value in field_values(event, b"data") {
        match &mut out {
            Some(s) => {
                s.push('\n');
                s.push_str(&String::from_utf8_lossy(value));
            }
            None => out = Some(String::from_utf8_lossy(value).into_owned()),
        }
    }
    out
}

/// The event's type: its last `event:` field, or `message` when it has none (as clients dispatch it). Only
/// `message` events carry JSON-RPC; clients ignore others' data or read it as something else (the
/// 2024-11-05 transport's `endpoint`).
pub fn event_type(event: &[u8]) -> &[u8] {
    match field_values(event, b"event").last() {
        Some(t) if !t.is_empty() => t,
        _ => b"message",
    }
}

/// The event's data as [`data`] reads it, but `Err` when a `data` line is not valid UTF-8 (which a client
/// would read with replacement characters: not what the gateway decided on).
pub fn data_utf8(event: &[u8]) -> Option<Result<String, std::str::Utf8Error>> {
    let mut out: Option<String> = None;
    for value in field_values(event, b"data") {
        let value = match std::str::from_utf8(value) {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        match &mut out {
            Some(s) => {
                s.push('\n');
                s.push_str(value);
            }
            None => out = Some(value.to_owned()),
        }
    }
    out.map(Ok)
}

/// The same event with its data replaced by `new_data` (one line of JSON).
pub fn with_data(event: &[u8], new_data: &str) -> Bytes {
    let mut out = Vec::with_capacity(event.len() + new_data.len());
    let mut wrote = false;
    for line in lines(event).filter(|l| !l.is_empty()) {
        if line.starts_with(b"data:") || line == b"data" {
            if !wrote {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(new_data.as_bytes());
                out.push(b'\n');
                wrote = true;
            }
        } else {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_endings() {
        let mut s = EventSplitter::default();
        s.push(b"id: 1\nevent: message\ndata: {\"a\"");
        assert!(s.next_event().is_none());
        s.push(b":1}\n\nid: 2\r\ndata: x\r\n\r");
        assert_eq!(
            &s.next_event().unwrap()[..],
            b"id: 1\nevent: message\ndata: {\"a\":1}\n\n"
        );
        assert!(
            s.next_event().is_none(),
            "CR alone at the end may be half a CRLF"
        );
        s.push(b"\n: comment\n\n");
        assert_eq!(&s.next_event().unwrap()[..], b"id: 2\r\ndata: x\r\n\r\n");
        assert_eq!(&s.next_event().unwrap()[..], b": comment\n\n");
        s.push(b"data: tail");
        assert!(s.next_event().is_none());
        assert_eq!(&s.finish().unwrap()[..], b"data: tail");
    }

    #[test]
    fn data_is_joined_and_rewritten_in_place() {
        let ev = b"id: 7\nevent: message\ndata: {\"x\":\ndata: 1}\nretry: 100\n\n";
        assert_eq!(data(ev).unwrap(), "{\"x\":\n1}");
        assert_eq!(
            &with_data(ev, "{}")[..],
            b"id: 7\nevent: message\ndata: {}\nretry: 100\n\n"
        );
        assert_eq!(data(b"id: 1\ndata\n\n").unwrap(), "");
        assert!(data(b": keepalive\n\n").is_none());
        assert!(data(b"database: x\n\n").is_none());
        assert!(data_utf8(b"data: \xff\n\n").unwrap().is_err());
        assert_eq!(data_utf8(b"data: a\ndata: b\n\n").unwrap().unwrap(), "a\nb");
    }

    #[test]
    fn event_types_as_clients_dispatch_them() {
        assert_eq!(event_type(b"data: 1\n\n"), b"message");
        assert_eq!(event_type(b"event:\ndata: 1\n\n"), b"message");
        assert_eq!(event_type(b"event: endpoint\ndata: /m\n\n"), b"endpoint");
        assert_eq!(event_type(b"event: x\nevent:message\n\n"), b"message");
        assert_eq!(event_type(b"events: x\n\n"), b"message");
    }
}
