//! The WHATWG HTML "event stream" interpretation (§9.2.6), as an EventSource or an SDK client applies it:
//! the stream decoded as UTF-8 (replacement characters for invalid bytes), one leading BOM ignored, lines
//! ended by CRLF, LF or CR, a blank line ending each block, an unterminated last block discarded.

/// One block of field lines ended by a blank line, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// `None` when the block had no `data` field; otherwise the data buffer with its last `\n` removed.
    pub data: Option<String>,
    /// Every other field, in order (comments excluded).
    pub fields: Vec<(String, String)>,
}

/// The blocks a client sees in `stream` (each one ended by a blank line).
pub fn blocks(stream: &[u8]) -> Vec<Block> {
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Vec::new();
    let mut data: Option<String> = None;
    let mut fields = Vec::new();
    let mut rest = text;
    loop {
        let Some(eol) = rest.find(['\r', '\n']) else {
            break; // an unterminated line is never processed
        };
        let line = &rest[..eol];
        let after = &rest[eol..];
        rest = if after.starts_with("\r\n") {
            &after[2..]
        } else {
            &after[1..]
        };
        if line.is_empty() {
            let data = data.take().map(|mut d: String| {
                d.pop(); // the last "\n"
                d
            });
            out.push(Block {
                data,
                fields: std::mem::take(&mut fields),
            });
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        if field == "data" {
            let d = data.get_or_insert_with(String::new);
            d.push_str(value);
            d.push('\n');
        } else {
            fields.push((field.to_owned(), value.to_owned()));
        }
    }
    out
}
