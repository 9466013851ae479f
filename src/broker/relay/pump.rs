//! Copies one job's bytes both ways between distcc and its host, watching
//! distcc's token stream as it passes. Token headers and small payloads are
//! read into a buffer and shown to the watchers; the bulk of a job (the
//! preprocessed source going up, the object coming down) is a payload the
//! watchers only count, so it moves socket to pipe to socket with
//! `splice(2)` and never enters user space.

use super::lane::{Got, Lane, Socket};
use super::observe::{RequestWatch, ResponseWatch};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How a relayed job ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// The host answered and both sides closed, or the client left.
    Done,
    /// The host closed or reset the connection before a complete answer.
    HostLost(String),
    /// No byte either way for the job timeout.
    Hung,
    /// The client gave up waiting for an answer the host had not sent for
    /// this long: distcc's own timeout, evidence of a hang.
    GaveUp(Duration),
}

/// What the relay learned of one job from its bytes.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// The client's side.
    pub request: RequestWatch,
    /// The server's side.
    pub response: ResponseWatch,
    /// When the request was complete.
    pub request_end: Option<Instant>,
    /// When the server said `DONE`.
    pub done_at: Option<Instant>,
}

impl Watch {
    /// Seconds the server took, from the end of the request to `DONE`.
    pub(crate) fn server_secs(&self) -> Option<f64> {
        let secs = self.done_at?.checked_duration_since(self.request_end?)?;
        (!self.request.broken && !self.response.broken).then_some(secs.as_secs_f64())
    }
}

/// Bytes a job moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Moved {
    /// From the client to the host.
    pub up: u64,
    /// From the host to the client.
    pub down: u64,
    /// Of those, how many went through a pipe unseen.
    pub spliced: u64,
}

/// The state of one job's copy.
struct Pump {
    up: Lane,
    down: Lane,
    moved: Moved,
    server_open: bool,
    /// When the host last sent a byte (or the job started).
    last_down: tokio::time::Instant,
    idle: Duration,
    deadline: tokio::time::Instant,
}

/// Copies both ways until both sides close, or nothing moves for `idle`,
/// watching the token stream as it passes. Returns how it ended and the
/// bytes moved.
pub(super) async fn pump(
    client: &TcpStream,
    server: &impl Socket,
    idle: Duration,
    watch: &mut Watch,
) -> (End, Moved) {
    let mut p = Pump {
        up: Lane::new(),
        down: Lane::new(),
        moved: Moved::default(),
        server_open: true,
        last_down: tokio::time::Instant::now(),
        idle,
        deadline: tokio::time::Instant::now() + idle,
    };
    loop {
        let end = tokio::select! {
            r = p.up.receive(client, watch.request.opaque()) => match r {
                // distcc never half-closes: the client is gone, and the job
                // with it; the host's fault only if it kept the client
                // waiting long.
                Ok(None) | Err(_) => Some(p.client_left(watch)),
                Ok(Some(got)) => p.upward(got, server, watch).await,
            },
            r = p.down.receive(server, watch.response.opaque()), if p.server_open => {
                p.downward(r, client, watch).await
            }
            // Silence after the host has answered in full is the client's.
            _ = tokio::time::sleep_until(p.deadline) => {
                Some(if p.server_open { End::Hung } else { End::Done })
            }
        };
        if let Some(end) = end {
            return (end, p.moved);
        }
    }
}

impl Pump {
    /// How the job ended when the client closed: it gave up if its request
    /// was complete, the answer was not, and the host had been silent for
    /// half the idle time or more.
    fn client_left(&self, watch: &Watch) -> End {
        let silent = self.last_down.elapsed();
        let waiting = watch.request_end.is_some() && watch.done_at.is_none() && self.server_open;
        if waiting && silent >= self.idle / 2 {
            End::GaveUp(silent)
        } else {
            End::Done
        }
    }

    /// Gives `got` from the client to the host.
    async fn upward(&mut self, got: Got, server: &impl Socket, watch: &mut Watch) -> Option<End> {
        let complete = match got {
            Got::Read(n) => watch.request.feed(&self.up.buf[..n]),
            Got::Piped(n) => watch.request.skip(n as u64),
        };
        if complete {
            watch.request_end = Some(Instant::now());
        }
        if !self.forward(true, server, got).await {
            return Some(End::HostLost("could not send to the host".into()));
        }
        None
    }

    /// Gives `got` to `dst` through the upward or downward lane and counts
    /// it; false when `dst` took none of it within the idle time.
    async fn forward(&mut self, upward: bool, dst: &impl Socket, got: Got) -> bool {
        let lane = if upward { &self.up } else { &self.down };
        let sent = tokio::time::timeout(self.idle, lane.give(dst, got)).await;
        if !matches!(sent, Ok(Ok(()))) {
            return false;
        }
        let n = got.len() as u64;
        if upward {
            self.moved.up += n;
        } else {
            self.moved.down += n;
        }
        self.moved.spliced += got.spliced();
        self.deadline = tokio::time::Instant::now() + self.idle;
        true
    }

    /// Handles what the host's side gave: bytes for the client, or its end.
    async fn downward(
        &mut self,
        r: std::io::Result<Option<Got>>,
        client: &TcpStream,
        watch: &mut Watch,
    ) -> Option<End> {
        let answered = self.moved.down > 0;
        let got = match r {
            Ok(Some(got)) => got,
            Ok(None) if !answered => {
                return Some(End::HostLost(
                    "closed the connection before answering".into(),
                ));
            }
            Err(e) if !answered => {
                let why = format!("connection failed before answering: {e}");
                return Some(End::HostLost(why));
            }
            Err(e) => {
                let why = format!("connection failed while answering: {e}");
                return Some(End::HostLost(why));
            }
            // distccd closes once it has answered in full; a close in the
            // middle of the answer is a host that went away.
            Ok(None) if watch.response.cut_short() => {
                let why = "closed the connection in the middle of its answer";
                return Some(End::HostLost(why.into()));
            }
            Ok(None) => {
                self.server_open = false;
                let _ = socket2::SockRef::from(client).shutdown(std::net::Shutdown::Write);
                return None;
            }
        };
        match got {
            Got::Read(n) => {
                if watch.response.feed(&self.down.buf[..n]) {
                    watch.done_at = Some(Instant::now());
                }
            }
            Got::Piped(n) => watch.response.skip(n as u64),
        }
        self.last_down = tokio::time::Instant::now();
        if !self.forward(false, client, got).await {
            return Some(End::Done); // the client went away
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Bytes no two offsets of which repeat in a short cycle.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn tok(tag: &str, v: usize) -> Vec<u8> {
        format!("{tag}{v:08x}").into_bytes()
    }

    /// A connected pair over loopback: (the end the test drives, the end
    /// the relay holds).
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let outer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (inner, _) = l.accept().await.unwrap();
        (outer, inner)
    }

    /// Writes `bytes` in pieces of varied size, so headers and payloads
    /// arrive cut at many places.
    async fn write_in_pieces(s: &mut TcpStream, bytes: &[u8]) {
        let mut at = 0;
        for size in [1usize, 11, 13, 5000, 70_000, 3, 300_000].iter().cycle() {
            if at == bytes.len() {
                break;
            }
            let n = (*size).min(bytes.len() - at);
            s.write_all(&bytes[at..at + n]).await.unwrap();
            at += n;
        }
    }

    #[tokio::test]
    async fn a_compile_with_large_payloads_arrives_intact_and_mostly_spliced() {
        let (mut distcc, client) = pair().await;
        let (mut distccd, server) = pair().await;
        let source = noise(3 << 20, 1);
        let object = noise(2 << 20, 2);
        let mut request = [tok("DIST", 1), tok("ARGC", 1), tok("ARGV", 3)].concat();
        request.extend(b"gcc");
        request.extend(tok("DOTI", source.len()));
        request.extend(&source);
        let mut response = [tok("DONE", 1), tok("STAT", 0), tok("SERR", 5)].concat();
        response.extend(b"warn\n");
        response.extend([tok("SOUT", 0), tok("DOTO", object.len())].concat());
        response.extend(&object);

        let relay = tokio::spawn(async move {
            let mut watch = Watch::default();
            let (end, moved) = pump(&client, &server, Duration::from_secs(20), &mut watch).await;
            (end, moved, watch)
        });
        let host = {
            let (request, response) = (request.clone(), response.clone());
            tokio::spawn(async move {
                let mut got = vec![0u8; request.len()];
                distccd.read_exact(&mut got).await.unwrap();
                assert!(got == request, "the host got the request unaltered");
                write_in_pieces(&mut distccd, &response).await;
                // distccd closes once it has answered.
            })
        };
        write_in_pieces(&mut distcc, &request).await;
        let mut answer = Vec::new();
        distcc.read_to_end(&mut answer).await.unwrap();
        host.await.unwrap();
        assert!(answer == response, "the client got the answer unaltered");
        drop(distcc);
        let (end, moved, watch) = relay.await.unwrap();

        assert_eq!(end, End::Done);
        assert_eq!(
            (moved.up, moved.down),
            (request.len() as u64, response.len() as u64)
        );
        assert!(
            moved.spliced > (source.len() + object.len()) as u64 * 9 / 10,
            "payloads go through the pipe: {moved:?}"
        );
        assert!(watch.request.complete && !watch.request.broken);
        assert_eq!(watch.request.source_bytes, source.len() as u64);
        assert_eq!(watch.request.bytes, request.len() as u64);
        assert!(watch.response.done && !watch.response.broken);
        assert_eq!(watch.response.stat, Some(0));
        assert_eq!(watch.response.object_bytes, object.len() as u64);
        assert!(watch.server_secs().is_some());
    }

    #[tokio::test]
    async fn a_stream_that_is_not_distcc_is_relayed_untouched() {
        let (mut peer, client) = pair().await;
        let (mut host, server) = pair().await;
        let mut bytes = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        bytes.extend(noise(1 << 20, 3));
        let relay = tokio::spawn(async move {
            let mut watch = Watch::default();
            let (end, moved) = pump(&client, &server, Duration::from_secs(20), &mut watch).await;
            (end, moved, watch)
        });
        let echo = tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 16];
            let mut seen = 0;
            while seen < (1 << 20) + 18 {
                let n = host.read(&mut buf).await.unwrap();
                assert!(n > 0, "the host saw the stream end early");
                host.write_all(&buf[..n]).await.unwrap();
                seen += n;
            }
        });
        let (mut rd, mut wr) = peer.split();
        let back = async {
            let mut back = vec![0u8; bytes.len()];
            rd.read_exact(&mut back).await.unwrap();
            back
        };
        let (_, back) = tokio::join!(write_in_pieces_half(&mut wr, &bytes), back);
        echo.await.unwrap();
        assert!(back == bytes, "the echo came back unaltered");
        drop(peer);
        let (end, moved, watch) = relay.await.unwrap();
        assert_eq!(end, End::Done);
        assert_eq!(
            (moved.up, moved.down),
            (bytes.len() as u64, bytes.len() as u64)
        );
        assert!(watch.request.broken && watch.response.broken);
        assert!(watch.server_secs().is_none());
    }

    #[tokio::test]
    async fn a_host_that_resets_during_the_object_is_lost_and_the_client_freed() {
        let (mut distcc, client) = pair().await;
        let (mut distccd, server) = pair().await;
        let source = noise(1 << 20, 4);
        let mut request = [tok("DIST", 1), tok("ARGC", 0), tok("DOTI", source.len())].concat();
        request.extend(&source);
        let relay = tokio::spawn(async move {
            let mut watch = Watch::default();
            let (end, moved) = pump(&client, &server, Duration::from_secs(20), &mut watch).await;
            (end, moved, watch)
        });
        let len = request.len();
        let (answered, heard) = tokio::sync::oneshot::channel::<()>();
        let host = tokio::spawn(async move {
            let mut got = vec![0u8; len];
            distccd.read_exact(&mut got).await.unwrap();
            let mut answer = [tok("DONE", 1), tok("STAT", 0), tok("SERR", 0)].concat();
            answer.extend([tok("SOUT", 0), tok("DOTO", 4 << 20)].concat());
            answer.extend(noise(1 << 20, 5)); // a quarter of the object
            distccd.write_all(&answer).await.unwrap();
            // Once the answer has begun to reach distcc:
            heard.await.unwrap();
            socket2::SockRef::from(&distccd)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(distccd); // a reset, not a close
        });
        distcc.write_all(&request).await.unwrap();
        // distcc reads the answer as it comes; once the relay is done with
        // the job it reads the end, and falls back to compiling locally.
        let reader = tokio::spawn(async move {
            let mut first = [0u8; 12];
            distcc.read_exact(&mut first).await.unwrap();
            answered.send(()).unwrap();
            let mut got = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), distcc.read_to_end(&mut got));
            read.await.is_ok()
        });
        host.await.unwrap();
        let (end, moved, watch) = relay.await.unwrap();
        assert!(
            matches!(&end, End::HostLost(why) if why.contains("while answering")),
            "{end:?}"
        );
        assert!(moved.down > 0 && moved.down < 4 << 20, "{moved:?}");
        assert!(watch.response.done && watch.request.complete);
        assert!(reader.await.unwrap(), "the client was not left hanging");
    }

    #[tokio::test]
    async fn a_host_that_closes_in_the_middle_of_its_answer_is_lost() {
        let (mut distcc, client) = pair().await;
        let (mut distccd, server) = pair().await;
        let request = [tok("DIST", 1), tok("ARGC", 0), tok("DOTI", 0)].concat();
        let relay = tokio::spawn(async move {
            let mut watch = Watch::default();
            pump(&client, &server, Duration::from_secs(20), &mut watch).await
        });
        distcc.write_all(&request).await.unwrap();
        let mut got = vec![0u8; request.len()];
        distccd.read_exact(&mut got).await.unwrap();
        let mut answer = [tok("DONE", 1), tok("STAT", 0), tok("SERR", 0)].concat();
        answer.extend([tok("SOUT", 0), tok("DOTO", 100_000)].concat());
        answer.extend(noise(60_000, 6));
        distccd.write_all(&answer).await.unwrap();
        drop(distccd); // an orderly close, 40,000 bytes early
        let mut seen = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), distcc.read_to_end(&mut seen));
        assert!(read.await.is_ok(), "the client was let go");
        let (end, moved) = relay.await.unwrap();
        assert_eq!(
            end,
            End::HostLost("closed the connection in the middle of its answer".into())
        );
        assert_eq!(moved.down, answer.len() as u64);
    }

    async fn write_in_pieces_half(w: &mut tokio::net::tcp::WriteHalf<'_>, bytes: &[u8]) {
        for piece in bytes.chunks(40_000) {
            w.write_all(piece).await.unwrap();
        }
    }

    /// A request sent whole, then the client leaves after `wait` with no
    /// answer: how the relay (idle time 2 s) ends the job.
    async fn client_leaves_after(wait: Duration) -> End {
        let (mut distcc, client) = pair().await;
        let (_distccd, server) = pair().await;
        let mut request = [tok("DIST", 1), tok("ARGC", 1), tok("ARGV", 3)].concat();
        request.extend(b"gcc");
        request.extend(tok("DOTI", 4));
        request.extend(b"x;\n\n");
        let relay = tokio::spawn(async move {
            let mut watch = Watch::default();
            pump(&client, &server, Duration::from_secs(2), &mut watch)
                .await
                .0
        });
        distcc.write_all(&request).await.unwrap();
        tokio::time::sleep(wait).await;
        drop(distcc);
        relay.await.unwrap()
    }

    #[tokio::test]
    async fn a_client_that_gives_up_on_a_silent_host_is_evidence_of_a_hang() {
        assert!(matches!(
            client_leaves_after(Duration::from_millis(1200)).await,
            End::GaveUp(_)
        ));
        // Leaving at once (make stopped, ^C) is not the host's fault.
        assert_eq!(
            client_leaves_after(Duration::from_millis(50)).await,
            End::Done
        );
    }
}
