use super::*;
use proptest::prelude::*;

const STREAM: &str = "event: message_start\ndata: {\"a\":1}\n\n: keep-alive comment\n\n\
data: line one\r\ndata:line two\r\n\r\nevent: ping\rdata: {}\r\rdata: héllo wörld ✓\n\n";

fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts {
        d.feed(&Bytes::copy_from_slice(&input[last..c]), &mut out);
        last = c;
    }
    d.feed(&Bytes::copy_from_slice(&input[last..]), &mut out);
    d.finish(&mut out);
    out
}

fn meaningful(events: &[SseEvent]) -> Vec<(Option<String>, Option<String>)> {
    events
        .iter()
        .filter(|e| e.data.is_some() || e.event.is_some())
        .map(|e| (e.event.clone(), e.data.clone()))
        .collect()
}

#[test]
fn decodes_fields_comments_and_line_endings() {
    let events = decode_in_pieces(STREAM.as_bytes(), &[]);
    let got = meaningful(&events);
    assert_eq!(
        got,
        vec![
            (Some("message_start".into()), Some("{\"a\":1}".into())),
            (None, Some("line one\nline two".into())),
            (Some("ping".into()), Some("{}".into())),
            (None, Some("héllo wörld ✓".into())),
        ]
    );
    let raw: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
    assert_eq!(raw, STREAM.as_bytes(), "raw bytes add up to the input");
}

#[test]
fn every_single_split_point_gives_the_same_events() {
    let whole = meaningful(&decode_in_pieces(STREAM.as_bytes(), &[]));
    for cut in 1..STREAM.len() {
        let split = decode_in_pieces(STREAM.as_bytes(), &[cut]);
        assert_eq!(meaningful(&split), whole, "cut at {cut}");
    }
}

#[test]
fn byte_by_byte_gives_the_same_events() {
    let whole = meaningful(&decode_in_pieces(STREAM.as_bytes(), &[]));
    let cuts: Vec<usize> = (1..STREAM.len()).collect();
    assert_eq!(meaningful(&decode_in_pieces(STREAM.as_bytes(), &cuts)), whole);
}

#[test]
fn unterminated_last_event_is_delivered_at_finish() {
    let events = decode_in_pieces(b"data: [DONE]", &[]);
    assert_eq!(events.last().unwrap().data.as_deref(), Some("[DONE]"));
}

#[test]
fn whole_events_in_one_chunk_are_not_copied() {
    let chunk = Bytes::from_static(b"data: 1\n\ndata: 2\n\n");
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    d.feed(&chunk, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].raw.as_ptr(), chunk.as_ptr(), "a slice of the input");
    assert_eq!(d.pending_len(), 0);
}

#[test]
fn encode_round_trips() {
    let raw = encode(Some("x"), "a\nb");
    assert_eq!(&raw[..], b"event: x\ndata: a\ndata: b\n\n");
    let events = decode_in_pieces(&raw, &[]);
    assert_eq!(meaningful(&events), vec![(Some("x".into()), Some("a\nb".into()))]);
}

proptest! {
    #[test]
    fn random_splits_never_change_the_events(cuts in proptest::collection::btree_set(1..STREAM.len(), 0..12)) {
        let whole = meaningful(&decode_in_pieces(STREAM.as_bytes(), &[]));
        let cuts: Vec<usize> = cuts.into_iter().collect();
        prop_assert_eq!(meaningful(&decode_in_pieces(STREAM.as_bytes(), &cuts)), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..256), cut in 0usize..256) {
        let cut = cut.min(input.len());
        let events = decode_in_pieces(&input, &[cut]);
        let total: usize = events.iter().map(|e| e.raw.len()).sum();
        prop_assert_eq!(total, input.len());
    }
}

#[test]
fn an_event_past_the_limit_is_dropped_and_the_rest_ignored() {
    let mut d = SseDecoder::with_limit(1000);
    let mut out = Vec::new();
    d.feed(&Bytes::from_static(b"data: ok\n\ndata: "), &mut out);
    assert_eq!(out.len(), 1);
    for _ in 0..20 {
        d.feed(&Bytes::from(vec![b'a'; 100]), &mut out);
    }
    assert!(d.overflowed());
    assert_eq!(d.pending_len(), 0, "what it held is freed");
    d.feed(&Bytes::from_static(b"\n\ndata: later\n\n"), &mut out);
    d.finish(&mut out);
    assert_eq!(out.len(), 1, "nothing after the overflow");
}

#[test]
fn a_long_line_in_tiny_chunks_is_scanned_once() {
    // 4 MB in 64-byte chunks: each feed resumes the search where the
    // last one stopped, so no byte is searched twice.
    let mut d = SseDecoder::with_limit(usize::MAX);
    let mut out = Vec::new();
    d.feed(&Bytes::from_static(b"data: "), &mut out);
    let piece = Bytes::from(vec![b'x'; 64]);
    for _ in 0..(4 << 20) / 64 {
        d.feed(&piece, &mut out);
        assert_eq!(d.scanned, d.pending.len());
    }
    d.feed(&Bytes::from_static(b"\r"), &mut out);
    d.feed(&Bytes::from_static(b"\n\n"), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data.as_ref().unwrap().len(), 4 << 20);
}
