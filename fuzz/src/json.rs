//! A small, strict RFC 8259 JSON parser that keeps every object member in order, duplicates included, so
//! the targets can ask "does this body have a duplicate key at any depth?" without trusting the parser under
//! test. It also records the nesting depth. Numbers keep their source text.
//!
//! Beyond RFC 8259 it refuses what the gateway's JSON layer (serde_json) documents as refused: lone surrogate
//! escapes (`\ud800`) and numbers whose value overflows an f64.

#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    /// The number's source text (valid RFC 8259 grammar).
    Num(String),
    Str(String),
    Arr(Vec<J>),
    /// Members in source order, duplicates kept.
    Obj(Vec<(String, J)>),
}

#[derive(Debug)]
pub struct Parsed {
    pub value: J,
    /// Deepest nesting of arrays/objects (a scalar is 0, `[]` is 1).
    pub depth: usize,
}

/// Parses a whole document: whitespace, one value, whitespace, end. `None` when it is not JSON.
pub fn parse(input: &[u8]) -> Option<Parsed> {
    // Every byte outside a string is ASCII in valid JSON, and serde_json refuses invalid UTF-8 in strings,
    // so a document is valid only if it is valid UTF-8 as a whole.
    let text = std::str::from_utf8(input).ok()?;
    let mut p = P {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
        max_depth: 0,
    };
    p.ws();
    let value = p.value()?;
    p.ws();
    (p.i == p.s.len()).then_some(Parsed {
        value,
        depth: p.max_depth,
    })
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
    max_depth: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn lit(&mut self, word: &[u8]) -> Option<()> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }
    fn value(&mut self) -> Option<J> {
        match self.peek()? {
            b'n' => self.lit(b"null").map(|_| J::Null),
            b't' => self.lit(b"true").map(|_| J::Bool(true)),
            b'f' => self.lit(b"false").map(|_| J::Bool(false)),
            b'"' => self.string().map(J::Str),
            b'[' => {
                self.enter();
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        items.push(self.value()?);
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.depth -= 1;
                Some(J::Arr(items))
            }
            b'{' => {
                self.enter();
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        if self.peek()? != b'"' {
                            return None;
                        }
                        let k = self.string()?;
                        self.ws();
                        if self.peek()? != b':' {
                            return None;
                        }
                        self.i += 1;
                        self.ws();
                        let v = self.value()?;
                        members.push((k, v));
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.depth -= 1;
                Some(J::Obj(members))
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }
    fn enter(&mut self) {
        self.depth += 1;
        self.max_depth = self.max_depth.max(self.depth);
    }
    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }
    fn number(&mut self) -> Option<J> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        let fits_integer = integer
            && if text.starts_with('-') {
                text.parse::<i64>().is_ok()
            } else {
                text.parse::<u64>().is_ok()
            };
        if !fits_integer && !text.parse::<f64>().ok()?.is_finite() {
            return None; // serde_json: "number out of range"
        }
        Some(J::Num(text.to_owned()))
    }
    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        let mut n = 0;
        for &c in h {
            n = n * 16 + (c as char).to_digit(16)?;
        }
        self.i += 4;
        Some(n)
    }
    fn string(&mut self) -> Option<String> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.i += 1;
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let u = self.hex4()?;
                            let cp = match u {
                                0xD800..=0xDBFF => {
                                    // Must be followed by an escaped low surrogate.
                                    if self.s.get(self.i..self.i + 2)? != b"\\u" {
                                        return None;
                                    }
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&lo) {
                                        return None;
                                    }
                                    0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                                }
                                0xDC00..=0xDFFF => return None,
                                u => u,
                            };
                            out.push(char::from_u32(cp)?);
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1F => return None,
                _ => {
                    // Copy one UTF-8 character (the input was checked to be UTF-8).
                    let len = match c {
                        0x00..=0x7F => 1,
                        0xC0..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        _ => 4,
                    };
                    out.push_str(std::str::from_utf8(&self.s[self.i..self.i + len]).ok()?);
                    self.i += len;
                }
            }
        }
    }
}

/// The first duplicate key found at any depth, as a path.
pub fn duplicate_key(v: &J) -> Option<String> {
    match v {
        J::Arr(items) => items.iter().find_map(duplicate_key),
        J::Obj(members) => {
            for (i, (k, _)) in members.iter().enumerate() {
                if members[..i].iter().any(|(k2, _)| k2 == k) {
                    return Some(k.clone());
                }
            }
            members
                .iter()
                .find_map(|(k, v)| duplicate_key(v).map(|d| format!("{k}.{d}")))
        }
        _ => None,
    }
}

impl J {
    /// The member named `key` of an object (the only one when there are no duplicates).
    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The same value as a `serde_json::Value`, built member by member (strings as this parser decoded them;
    /// only a number's text is handed to serde_json, which owns number semantics).
    pub fn to_value(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Num(t) => serde_json::from_str(t).expect("a number this parser accepted"),
            J::Str(s) => Value::String(s.clone()),
            J::Arr(items) => Value::Array(items.iter().map(J::to_value).collect()),
            J::Obj(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictness() {
        assert!(parse(b" {\"a\":[1,-0.5e3,true,null,\"\\u00e9\\ud83d\\ude00\"]} ").is_some());
        for bad in [
            &b"{\"a\":1,}"[..],
            b"[01]",
            b"[1.]",
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"1e400",
            b"\"a\x01\"",
            b"\xef\xbb\xbf{}",
            b"{} {}",
            b"[1,]",
        ] {
            assert!(parse(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
        let p = parse(b"{\"a\":{\"b\":1,\"b\":2}}").unwrap();
        assert_eq!(duplicate_key(&p.value).as_deref(), Some("a.b"));
        assert_eq!(p.depth, 2);
    }
}
