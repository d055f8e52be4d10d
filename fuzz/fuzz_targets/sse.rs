//! The SSE splitter and rewriter (`gateway/src/mcp/sse.rs`, which `filter::rewrite_event` applies per event)
//! against the WHATWG event-stream interpretation (`mcp_gateway_fuzz::sse`), i.e. what a client will read.
//!
//! Input: byte 0 = number of extra cut points (mod 8), then 2 bytes per cut point, then the stream.
//! Properties:
//! 1. Lossless: the events (and the unterminated rest) concatenate to the stream, byte for byte.
//! 2. Chunking does not matter: fed whole, one byte at a time, or cut at the given points, the splitter
//!    yields the same events.
//! 3. Each event it yields (but the rest) is exactly one event.
//! 4. The gateway reads what a client reads: for every block a client dispatches, `sse::data` of the
//!    matching event equals the client's data buffer — an event the gateway reads as "no data" but a client
//!    reads as data would pass the filter unchecked (fail open).
//! 5. Rewriting: `with_data(event, new)` is one event whose data a client reads as `new`, with the event's
//!    other fields kept in order; and the stream with every other data event rewritten reads, for a client,
//!    as the original blocks with exactly those data buffers replaced.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mcp_gateway::mcp::sse::{self, EventSplitter};
use mcp_gateway_fuzz::sse::{Block, blocks};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// All events of `chunks` fed in order; `(complete events, rest)`.
fn split<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Bytes>, Option<Bytes>) {
    let mut s = EventSplitter::default();
    let mut out = Vec::new();
    for c in chunks {
        s.push(c);
        while let Some(e) = s.next_event() {
            out.push(e);
        }
    }
    (out, s.finish())
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let ncuts = (n % 8) as usize;
    if rest.len() < 2 * ncuts {
        return;
    }
    let (cut_bytes, stream) = rest.split_at(2 * ncuts);

    // 1. lossless
    let (events, tail) = split([stream]);
    let all: Vec<Bytes> = events.iter().cloned().chain(tail.clone()).collect();
    assert_eq!(all.concat(), stream, "events do not add up to the stream");

    // 2. chunking
    let bytewise = split(stream.chunks(1));
    assert_eq!(
        bytewise,
        (events.clone(), tail.clone()),
        "byte-at-a-time split differs"
    );
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as usize % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut at = 0;
    for c in cuts {
        pieces.push(&stream[at..c]);
        at = c;
    }
    pieces.push(&stream[at..]);
    assert_eq!(
        split(pieces),
        (events.clone(), tail.clone()),
        "chunked split differs"
    );

    // A leading BOM may be yielded on its own (it carries no field); it is not an event.
    let first_is_bom = events.first().is_some_and(|e| &e[..] == BOM);
    let evs: &[Bytes] = if first_is_bom { &events[1..] } else { &events };

    // 3. each yielded event is one event (one ended by a lone CR is only known to be complete once the next
    // byte is not LF)
    for e in evs {
        if e.starts_with(BOM) {
            continue; // alone, it would be a stream start, whose BOM is split off
        }
        let mut alone = e.to_vec();
        if e.ends_with(b"\r") {
            alone.push(b'x');
        }
        let (again, rest) = split([&alone[..]]);
        assert!(
            again.len() == 1
                && again[0] == e
                && rest.as_deref() == alone.get(e.len()..).filter(|r| !r.is_empty()),
            "event {e:?} is not one event: {again:?} + {rest:?}"
        );
    }

    // 4. the gateway reads what a client reads
    let client = blocks(stream);
    let gateway: Vec<&Bytes> = evs.iter().chain(tail.iter()).collect();
    assert!(
        evs.len() <= client.len() && client.len() <= gateway.len(),
        "{} events (+{} rest) but a client dispatches {} blocks",
        evs.len(),
        tail.is_some() as usize,
        client.len()
    );
    for (i, b) in client.iter().enumerate() {
        assert_eq!(
            sse::data(gateway[i]),
            b.data,
            "event {i} {:?}: the gateway reads other data than a client",
            gateway[i]
        );
    }

    // 5. rewriting
    let mut out_stream: Vec<u8> = if first_is_bom {
        BOM.to_vec()
    } else {
        Vec::new()
    };
    let mut expected: Vec<Block> = Vec::new();
    for (i, ev) in gateway.iter().enumerate() {
        let data = sse::data(ev);
        let rewrite = i % 2 == 1 || i + 1 == gateway.len();
        match data {
            Some(d) if rewrite => {
                let new = serde_json::to_string(&format!("{i}:{d}")).unwrap();
                let out = sse::with_data(ev, &new);
                let (one, rest) = split([&out[..]]);
                assert!(
                    one.len() == 1 && one[0] == out && rest.is_none(),
                    "rewritten {out:?} is not one event"
                );
                let mut closed = ev.to_vec();
                closed.extend_from_slice(b"\n\n");
                let fields = blocks(&closed).swap_remove(0).fields;
                let want = Block {
                    data: Some(new),
                    fields,
                };
                assert_eq!(
                    blocks(&out),
                    vec![want.clone()],
                    "rewritten {ev:?} as {out:?}"
                );
                out_stream.extend_from_slice(&out);
                expected.push(want);
            }
            _ => {
                out_stream.extend_from_slice(ev);
                if let Some(b) = client.get(i) {
                    expected.push(b.clone());
                }
            }
        }
    }
    assert_eq!(
        blocks(&out_stream),
        expected,
        "the rewritten stream reads differently: {out_stream:?}"
    );
});
