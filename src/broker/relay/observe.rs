//! Reads distcc's token stream as the relay copies it, without altering or
//! holding back a byte. A token is 12 bytes: a 4-letter tag and 8 hex
//! digits; for some tags the digits are the length of a payload that
//! follows. Payloads are counted and skipped, so memory stays constant;
//! the relay may move a payload without showing it (`opaque`, `skip`).
//!
//! Request: `DIST ARGC ARGV… DOTI` (protocols 1, 2), or `DIST CDIR ARGC
//! ARGV… NFIL (NAME FILE|LINK)…` (protocol 3). Response: `DONE STAT SERR SOUT
//! DOTO [DOTD]`. A stream that does not parse is marked broken and ignored.

/// Tags followed by a payload of the announced length.
const PAYLOAD: &[&[u8; 4]] = &[
    b"ARGV", b"DOTI", b"CDIR", b"NAME", b"FILE", b"LINK", b"SERR", b"SOUT", b"DOTO", b"DOTD",
];
/// Tags whose digits are a value.
const VALUE: &[&[u8; 4]] = &[b"DIST", b"ARGC", b"NFIL", b"DONE", b"STAT"];

/// What the tokenizer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// A token header.
    Token([u8; 4], u32),
    /// The last byte of a payload (right after its header when empty).
    PayloadEnd([u8; 4]),
}

/// Splits a byte stream into token events, across chunk boundaries.
#[derive(Debug, Default)]
struct Tokens {
    header: [u8; 12],
    have: usize,
    skipping: Option<([u8; 4], u64)>,
    broken: bool,
}

impl Tokens {
    /// Bytes that follow and need not be looked at: the rest of the
    /// current payload, or everything once the stream is broken.
    fn opaque(&self) -> u64 {
        if self.broken {
            u64::MAX
        } else {
            self.skipping.map_or(0, |(_, left)| left)
        }
    }

    /// Passes over `n` bytes (at most `opaque()`) without their contents.
    fn skip(&mut self, n: u64, out: &mut Vec<Event>) {
        let Some((tag, left)) = self.skipping.filter(|_| !self.broken) else {
            return;
        };
        debug_assert!(n <= left, "skipped past the payload");
        let left = left.saturating_sub(n);
        if left == 0 {
            self.skipping = None;
            out.push(Event::PayloadEnd(tag));
        } else {
            self.skipping = Some((tag, left));
        }
    }

    fn feed(&mut self, mut data: &[u8], out: &mut Vec<Event>) {
        while !data.is_empty() && !self.broken {
            if let Some((_, left)) = self.skipping {
                let n = (left as usize).min(data.len());
                data = &data[n..];
                self.skip(n as u64, out);
                continue;
            }
            let n = (12 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < 12 {
                break;
            }
            self.have = 0;
            let tag: [u8; 4] = self.header[..4].try_into().expect("4 bytes");
            let Some(value) = std::str::from_utf8(&self.header[4..])
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
            else {
                self.broken = true;
                break;
            };
            out.push(Event::Token(tag, value));
            if PAYLOAD.contains(&&tag) {
                if value == 0 {
                    out.push(Event::PayloadEnd(tag));
                } else {
                    self.skipping = Some((tag, u64::from(value)));
                }
            } else if !VALUE.contains(&&tag) {
                self.broken = true;
            }
        }
    }
}

/// Watches the client's side: a job's request.
#[derive(Debug, Default)]
pub struct RequestWatch {
    tokens: Tokens,
    events: Vec<Event>,
    /// The protocol version from `DIST`.
    pub version: u32,
    /// Bytes of preprocessed source (`DOTI`) or shipped files (`FILE`).
    pub source_bytes: u64,
    /// All bytes the client sent.
    pub bytes: u64,
    files_left: Option<u32>,
    /// The request is complete.
    pub complete: bool,
    /// The stream did not parse.
    pub broken: bool,
}

impl RequestWatch {
    /// Feeds bytes sent by the client; true when they complete the request.
    pub fn feed(&mut self, data: &[u8]) -> bool {
        self.bytes += data.len() as u64;
        if self.complete || self.broken {
            return false;
        }
        self.events.clear();
        self.tokens.feed(data, &mut self.events);
        self.judge()
    }

    /// Bytes the client sends next that need not be fed: the rest of a
    /// payload, or everything after the end of the request or a parse error.
    pub fn opaque(&self) -> u64 {
        if self.complete || self.broken {
            u64::MAX
        } else {
            self.tokens.opaque()
        }
    }

    /// Counts `n` bytes (at most `opaque()`) passed on unseen; true when
    /// they complete the request.
    pub fn skip(&mut self, n: u64) -> bool {
        self.bytes += n;
        if self.complete || self.broken {
            return false;
        }
        self.events.clear();
        self.tokens.skip(n, &mut self.events);
        self.judge()
    }

    /// Applies the tokenizer's events; true when they complete the request.
    fn judge(&mut self) -> bool {
        for i in 0..self.events.len() {
            if self.complete {
                // Whatever follows the request is not judged: the same
                // bytes arriving in a later read would not be read at all.
                return true;
            }
            match self.events[i] {
                Event::Token(t, v) if &t == b"DIST" => self.version = v,
                Event::Token(t, v) if &t == b"DOTI" || &t == b"FILE" => {
                    self.source_bytes += u64::from(v)
                }
                Event::Token(t, v) if &t == b"NFIL" => {
                    self.files_left = Some(v);
                    if v == 0 {
                        self.complete = true;
                    }
                }
                Event::PayloadEnd(t) if &t == b"DOTI" && self.version < 3 => self.complete = true,
                Event::PayloadEnd(t) if &t == b"FILE" || &t == b"LINK" => {
                    if let Some(n) = self.files_left.as_mut() {
                        *n = n.saturating_sub(1);
                        self.complete |= *n == 0;
                    }
                }
                _ => {}
            }
        }
        self.broken |= self.tokens.broken && !self.complete;
        self.complete
    }
}

/// Watches the server's side: the job's answer.
#[derive(Debug, Default)]
pub struct ResponseWatch {
    tokens: Tokens,
    events: Vec<Event>,
    /// `DONE` was seen: the server finished compiling.
    pub done: bool,
    /// The compiler's wait status from `STAT` (0: success).
    pub stat: Option<u32>,
    /// Bytes of the object file (`DOTO`).
    pub object_bytes: u64,
    /// All bytes the server sent.
    pub bytes: u64,
    /// The stream did not parse.
    pub broken: bool,
}

impl ResponseWatch {
    /// True when the stream, ended here, would be an answer cut short: no
    /// `DONE` yet, or a token or payload begun and not finished. A stream
    /// that does not parse is not judged.
    pub(crate) fn cut_short(&self) -> bool {
        !self.broken && (!self.done || self.tokens.have > 0 || self.tokens.skipping.is_some())
    }

    /// Bytes the server sends next that need not be fed (see
    /// `RequestWatch::opaque`).
    pub fn opaque(&self) -> u64 {
        self.tokens.opaque()
    }

    /// Counts `n` bytes (at most `opaque()`) passed on unseen.
    pub fn skip(&mut self, n: u64) {
        self.bytes += n;
        self.events.clear();
        self.tokens.skip(n, &mut self.events);
    }

    /// Feeds bytes sent by the server; true when they hold `DONE`.
    pub fn feed(&mut self, data: &[u8]) -> bool {
        self.bytes += data.len() as u64;
        if self.broken {
            return false;
        }
        self.events.clear();
        self.tokens.feed(data, &mut self.events);
        self.broken |= self.tokens.broken;
        let mut done_now = false;
        for e in &self.events {
            match *e {
                Event::Token(t, _) if &t == b"DONE" => {
                    done_now = !self.done;
                    self.done = true;
                }
                Event::Token(t, v) if &t == b"STAT" => self.stat = Some(v),
                Event::Token(t, v) if &t == b"DOTO" => self.object_bytes = u64::from(v),
                _ => {}
            }
        }
        done_now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tok(tag: &str, v: usize) -> Vec<u8> {
        format!("{tag}{v:08x}").into_bytes()
    }

    fn request(version: u32, doti: &[u8]) -> Vec<u8> {
        let mut b = tok("DIST", version as usize);
        b.extend(tok("ARGC", 2));
        for a in ["gcc", "-c"] {
            b.extend(tok("ARGV", a.len()));
            b.extend(a.as_bytes());
        }
        b.extend(tok("DOTI", doti.len()));
        b.extend(doti);
        b
    }

    #[test]
    fn request_completes_after_doti_in_any_chunking() {
        let bytes = request(1, &[7u8; 300]);
        for chunk in [1, 5, 12, 13, 64, 4096] {
            let mut w = RequestWatch::default();
            let mut completed_at = None;
            for (i, c) in bytes.chunks(chunk).enumerate() {
                if w.feed(c) {
                    completed_at = Some(i);
                }
            }
            assert!(w.complete && !w.broken, "chunk {chunk}");
            assert_eq!(
                completed_at,
                Some(bytes.len().div_ceil(chunk) - 1),
                "chunk {chunk}"
            );
            assert_eq!(
                (w.version, w.source_bytes, w.bytes),
                (1, 300, bytes.len() as u64)
            );
        }
    }

    #[test]
    fn protocol_3_counts_files() {
        let mut b = tok("DIST", 3);
        b.extend(tok("CDIR", 4));
        b.extend(b"/src");
        b.extend(tok("ARGC", 0));
        b.extend(tok("NFIL", 2));
        b.extend(tok("NAME", 3));
        b.extend(b"a.c");
        b.extend(tok("FILE", 5));
        b.extend(b"int;\n");
        b.extend(tok("NAME", 3));
        b.extend(b"b.h");
        let mut w = RequestWatch::default();
        assert!(!w.feed(&b));
        let mut last = tok("LINK", 2);
        last.extend(b"xx");
        assert!(w.feed(&last));
        assert_eq!(w.source_bytes, 5);
    }

    #[test]
    fn response_and_garbage() {
        let mut b = tok("DONE", 1);
        b.extend(tok("STAT", 0x100));
        b.extend(tok("SERR", 3));
        b.extend(b"err");
        b.extend(tok("SOUT", 0));
        b.extend(tok("DOTO", 4));
        b.extend(b"\x7fELF");
        let mut w = ResponseWatch::default();
        assert!(w.feed(&b[..14]), "DONE seen in the first chunk");
        assert!(!w.feed(&b[14..]));
        assert_eq!((w.stat, w.object_bytes, w.broken), (Some(0x100), 4, false));

        assert!(!w.cut_short(), "a whole answer");
        let mut cut = ResponseWatch::default();
        for (end, short) in [(6, true), (14, true), (40, true), (b.len() - 1, true)] {
            cut = ResponseWatch::default();
            cut.feed(&b[..end]);
            assert_eq!(cut.cut_short(), short, "cut at {end}");
        }
        cut.feed(&b[b.len() - 1..]);
        assert!(!cut.cut_short());

        let mut g = RequestWatch::default();
        g.feed(b"GET / HTTP/1.1\r\n\r\n");
        assert!(g.broken && !g.complete);
        let mut g = RequestWatch::default();
        g.feed(b"DISTzzzzzzzz");
        assert!(g.broken);
    }

    /// Streams of real tokens, garbage and payloads, cut anywhere: the
    /// watchers conclude the same as when they see the stream whole (a
    /// fuzzer found a request judged broken by bytes after its end).
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let tags = prop::sample::select(vec![
            "DIST", "ARGC", "ARGV", "DOTI", "NFIL", "NAME", "FILE", "DONE", "STAT", "SERR", "DOTO",
            "JUNK",
        ]);
        let piece = (tags, 0usize..40, any::<bool>()).prop_map(|(t, n, body)| {
            let mut b = tok(t, n);
            if body {
                b.extend(vec![b'x'; n]);
            }
            b
        });
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_verdict(s in stream(), cut in any::<prop::sample::Index>()) {
            let cut = cut.index(s.len() + 1);
            let (mut whole, mut split) = (RequestWatch::default(), RequestWatch::default());
            let (mut whole_r, mut split_r) = (ResponseWatch::default(), ResponseWatch::default());
            whole.feed(&s);
            whole_r.feed(&s);
            for part in [&s[..cut], &s[cut..]] {
                split.feed(part);
                split_r.feed(part);
            }
            prop_assert_eq!(
                (whole.complete, whole.broken, whole.source_bytes, whole.bytes),
                (split.complete, split.broken, split.source_bytes, split.bytes)
            );
            prop_assert_eq!(
                (whole_r.done, whole_r.stat, whole_r.broken, whole_r.object_bytes),
                (split_r.done, split_r.stat, split_r.broken, split_r.object_bytes)
            );
        }

        /// The relay splices payloads past the watchers unseen: skipping
        /// what they call opaque concludes the same as showing every byte.
        #[test]
        fn skipping_opaque_bytes_does_not_change_the_verdict(
            s in stream(),
            steps in proptest::collection::vec(1usize..20, 1..64),
        ) {
            let (mut whole, mut whole_r) = (RequestWatch::default(), ResponseWatch::default());
            whole.feed(&s);
            whole_r.feed(&s);
            let (mut req, mut resp) = (RequestWatch::default(), ResponseWatch::default());
            let (mut at_req, mut at_resp, mut completed) = (0, 0, 0);
            for step in steps.iter().cycle().take(4 * s.len() + 4) {
                let left = |at: usize| s.len() - at;
                match req.opaque().min(left(at_req) as u64) as usize {
                    0 => {
                        let n = (*step).min(left(at_req));
                        completed += usize::from(req.feed(&s[at_req..at_req + n]));
                        at_req += n;
                    }
                    n => {
                        let n = n.min(*step * 3);
                        completed += usize::from(req.skip(n as u64));
                        at_req += n;
                    }
                }
                match resp.opaque().min(left(at_resp) as u64) as usize {
                    0 => {
                        let n = (*step).min(left(at_resp));
                        resp.feed(&s[at_resp..at_resp + n]);
                        at_resp += n;
                    }
                    n => {
                        resp.skip(n as u64);
                        at_resp += n;
                    }
                }
            }
            prop_assert_eq!((at_req, at_resp), (s.len(), s.len()));
            prop_assert_eq!(completed, usize::from(whole.complete));
            prop_assert_eq!(
                (whole.complete, whole.broken, whole.source_bytes, whole.bytes),
                (req.complete, req.broken, req.source_bytes, req.bytes)
            );
            prop_assert_eq!(
                (whole_r.done, whole_r.stat, whole_r.broken, whole_r.object_bytes, whole_r.bytes),
                (resp.done, resp.stat, resp.broken, resp.object_bytes, resp.bytes)
            );
        }
    }
}
