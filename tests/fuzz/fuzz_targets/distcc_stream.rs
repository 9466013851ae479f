//! distcc's token stream as the relay watches it: any bytes, cut into
//! chunks anywhere, must never panic, and what the watchers conclude must
//! not depend on where the stream was cut, nor on whether the payloads
//! the watchers call opaque were shown to them or skipped (as the relay
//! splices them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpb::broker::observe::{RequestWatch, ResponseWatch};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(stream.len());
    let (mut whole_req, mut split_req) = (RequestWatch::default(), RequestWatch::default());
    let (mut whole_resp, mut split_resp) = (ResponseWatch::default(), ResponseWatch::default());
    whole_req.feed(stream);
    whole_resp.feed(stream);
    for part in [&stream[..cut], &stream[cut..]] {
        split_req.feed(part);
        split_resp.feed(part);
    }
    // As the relay moves them: what the watcher calls opaque is skipped
    // unseen, the rest fed in pieces of at most `cut` bytes.
    let step = cut.max(1);
    let (mut relay_req, mut relay_resp) = (RequestWatch::default(), ResponseWatch::default());
    let mut at = 0;
    while at < stream.len() {
        let left = stream.len() - at;
        match usize::try_from(relay_req.opaque())
            .unwrap_or(usize::MAX)
            .min(left)
        {
            0 => {
                let n = step.min(left);
                relay_req.feed(&stream[at..at + n]);
                at += n;
            }
            n => {
                relay_req.skip(n as u64);
                at += n;
            }
        }
    }
    at = 0;
    while at < stream.len() {
        let left = stream.len() - at;
        match usize::try_from(relay_resp.opaque())
            .unwrap_or(usize::MAX)
            .min(left)
        {
            0 => {
                let n = step.min(left);
                relay_resp.feed(&stream[at..at + n]);
                at += n;
            }
            n => {
                relay_resp.skip(n as u64);
                at += n;
            }
        }
    }
    assert_eq!(
        (
            whole_req.complete,
            whole_req.broken,
            whole_req.source_bytes,
            whole_req.bytes
        ),
        (
            relay_req.complete,
            relay_req.broken,
            relay_req.source_bytes,
            relay_req.bytes
        )
    );
    assert_eq!(
        (
            whole_resp.done,
            whole_resp.stat,
            whole_resp.broken,
            whole_resp.object_bytes,
            whole_resp.bytes
        ),
        (
            relay_resp.done,
            relay_resp.stat,
            relay_resp.broken,
            relay_resp.object_bytes,
            relay_resp.bytes
        )
    );
    assert_eq!(whole_req.bytes, stream.len() as u64);
    assert_eq!(
        (whole_req.complete, whole_req.broken, whole_req.source_bytes),
        (split_req.complete, split_req.broken, split_req.source_bytes)
    );
    assert_eq!(
        (
            whole_resp.done,
            whole_resp.stat,
            whole_resp.broken,
            whole_resp.object_bytes
        ),
        (
            split_resp.done,
            split_resp.stat,
            split_resp.broken,
            split_resp.object_bytes
        )
    );
});
