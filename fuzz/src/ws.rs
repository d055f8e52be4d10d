//! RFC 6455 framing, written from the RFC: an encoder for the frames a client (masked) sends, and strict
//! decoders for both directions.

pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// One frame on the wire (minimal length encoding; masked when `mask` is set).
pub fn encode(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// The next frame at the start of `b` and its length on the wire; `None` if `b` holds no whole frame.
pub fn decode_one(b: &[u8]) -> Option<(Frame, usize)> {
    let (&h0, &h1) = (b.first()?, b.get(1)?);
    let mut i = 2;
    let len = match h1 & 0x7F {
        126 => {
            let l = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as u64;
            i = 4;
            l
        }
        127 => {
            let l = u64::from_be_bytes(b.get(2..10)?.try_into().ok()?);
            i = 10;
            l
        }
        n => n as u64,
    };
    let masked = h1 & 0x80 != 0;
    let key = if masked {
        let k: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
        i += 4;
        Some(k)
    } else {
        None
    };
    let len = usize::try_from(len).ok()?;
    let end = i.checked_add(len)?;
    let raw = b.get(i..end)?;
    let payload = match key {
        Some(k) => raw.iter().enumerate().map(|(j, x)| x ^ k[j % 4]).collect(),
        None => raw.to_vec(),
    };
    Some((
        Frame {
            fin: h0 & 0x80 != 0,
            rsv: (h0 >> 4) & 0x7,
            opcode: h0 & 0x0F,
            masked,
            payload,
        },
        end,
    ))
}

/// What a tunnel must deliver for the bytes a client sent: the payloads of the complete binary messages
/// that come before the first thing that ends the tunnel (a text or close message, a protocol error, or the
/// end of the bytes). Frames from a client must be masked; no extension is negotiated, so RSV bits are
/// errors; control frames are unfragmented and at most 125 bytes; fragments follow RFC 6455 §5.4.
pub fn tunnel_bytes_from_client(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut message: Option<(u8, Vec<u8>)> = None;
    while let Some((f, n)) = decode_one(b) {
        b = &b[n..];
        if f.rsv != 0 || !f.masked {
            break;
        }
        match f.opcode {
            PING | PONG => {
                if !f.fin || f.payload.len() > 125 {
                    break;
                }
            }
            CLOSE => break,
            TEXT | BINARY => {
                if message.is_some() {
                    break; // a new data message inside a fragmented one
                }
                if f.fin {
                    if f.opcode == TEXT {
                        break;
                    }
                    out.extend_from_slice(&f.payload);
                } else {
                    message = Some((f.opcode, f.payload));
                }
            }
            CONT => {
                let Some((op, mut buf)) = message.take() else {
                    break; // nothing to continue
                };
                buf.extend_from_slice(&f.payload);
                if f.fin {
                    if op == TEXT {
                        break;
                    }
                    out.extend_from_slice(&buf);
                } else {
                    message = Some((op, buf));
                }
            }
            _ => break, // reserved opcode
        }
    }
    out
}
