//! distcc's token stream as the relay watches it: any bytes, cut into
//! chunks anywhere, must never panic, and what the watchers conclude must
//! not depend on where the stream was cut, nor on whether the payloads
//! the watchers call opaque were shown to them or skipped (as the relay
//! splices them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpb::broker::relay::observe::{RequestWatch, ResponseWatch};

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
    as_relay(&mut relay_req, stream, step);
    as_relay(&mut relay_resp, stream, step);
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

/// The calls the relay makes on either watcher.
trait Watcher {
    fn feed(&mut self, data: &[u8]);
    fn skip(&mut self, n: u64);
    fn opaque(&self) -> u64;
}

impl Watcher for RequestWatch {
    fn feed(&mut self, data: &[u8]) {
        RequestWatch::feed(self, data);
    }
    fn skip(&mut self, n: u64) {
        RequestWatch::skip(self, n);
    }
    fn opaque(&self) -> u64 {
        RequestWatch::opaque(self)
    }
}

impl Watcher for ResponseWatch {
    fn feed(&mut self, data: &[u8]) {
        ResponseWatch::feed(self, data);
    }
    fn skip(&mut self, n: u64) {
        ResponseWatch::skip(self, n);
    }
    fn opaque(&self) -> u64 {
        ResponseWatch::opaque(self)
    }
}

/// Shows `stream` to `w` as the relay does: opaque runs skipped, the rest
/// fed `step` bytes at a time.
fn as_relay(w: &mut impl Watcher, stream: &[u8], step: usize) {
    let mut at = 0;
    while at < stream.len() {
        let left = stream.len() - at;
        match usize::try_from(w.opaque()).unwrap_or(usize::MAX).min(left) {
            0 => {
                let n = step.min(left);
                w.feed(&stream[at..at + n]);
                at += n;
            }
            n => {
                w.skip(n as u64);
                at += n;
            }
        }
    }
}
