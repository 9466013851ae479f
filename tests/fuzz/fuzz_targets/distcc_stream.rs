//! distcc's token stream as the relay watches it: any bytes, cut into
//! chunks anywhere, must never panic, and what the watchers conclude must
//! not depend on where the stream was cut.
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
