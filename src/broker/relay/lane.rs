//! One direction of a relayed job: bytes are read into a buffer where the
//! watchers must see them, and moved socket to pipe to socket with
//! `splice(2)` where they need not (payloads), so the bulk of a job never
//! enters user space.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// A non-blocking stream socket the relay copies from and to: distcc's or
/// distccd's TCP connection, or the socket an ssh job's stdin and stdout
/// are. Both splice.
pub(super) trait Socket: AsRawFd + Sync {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

/// Both tokio stream types have these as inherent methods.
macro_rules! socket {
    ($t:ty) => {
        impl Socket for $t {
            fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$t>::readable(self)
            }
            fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$t>::writable(self)
            }
            fn try_io<R>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                <$t>::try_io(self, interest, f)
            }
            fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                <$t>::try_read(self, buf)
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$t>::try_write(self, buf)
            }
        }
    };
}
socket!(TcpStream);
socket!(UnixStream);

/// Copy buffer per direction, for headers and small payloads.
const BUF: usize = 16 * 1024;
/// Payloads at least this long are spliced, not copied.
const SPLICE_MIN: u64 = 4 * 1024;
/// Pipe capacity asked for (the kernel's default is 64 KiB).
const PIPE: usize = 256 * 1024;

/// Bytes taken from one side, waiting to be given to the other.
#[derive(Debug, Clone, Copy)]
pub(super) enum Got {
    /// This many bytes at the start of the lane's buffer.
    Read(usize),
    /// This many bytes in the lane's pipe.
    Piped(usize),
}

impl Got {
    pub(super) fn len(self) -> usize {
        match self {
            Got::Read(n) | Got::Piped(n) => n,
        }
    }

    pub(super) fn spliced(self) -> u64 {
        match self {
            Got::Read(_) => 0,
            Got::Piped(n) => n as u64,
        }
    }
}

/// One direction of the copy.
pub(super) struct Lane {
    /// What was read, for the watchers.
    pub(super) buf: Vec<u8>,
    pipe: Option<Pipe>,
    /// A pipe could not be made: copy everything.
    no_pipe: bool,
}

impl Lane {
    pub(super) fn new() -> Self {
        Lane {
            buf: vec![0; BUF],
            pipe: None,
            no_pipe: false,
        }
    }

    /// The lane's pipe, made on first use.
    fn pipe(&mut self) -> Option<&Pipe> {
        if self.pipe.is_none() && !self.no_pipe {
            match Pipe::new() {
                Ok(p) => self.pipe = Some(p),
                Err(e) => {
                    tracing::debug!("no pipe for splicing ({e}); copying");
                    self.no_pipe = true;
                }
            }
        }
        self.pipe.as_ref()
    }

    /// Takes what `src` has, splicing when the next `opaque` bytes need not
    /// be seen. Cancel-safe: bytes are only taken in the poll that returns.
    /// `None` when the side has closed.
    pub(super) async fn receive(
        &mut self,
        src: &impl Socket,
        opaque: u64,
    ) -> io::Result<Option<Got>> {
        if opaque >= SPLICE_MIN {
            let want = opaque.min(PIPE as u64) as usize;
            if let Some(pipe) = self.pipe() {
                // The pipe is empty here (each `give` drains it), so
                // EAGAIN means the socket has nothing.
                let n = loop {
                    src.readable().await?;
                    match src.try_io(Interest::READABLE, || {
                        splice(src.as_raw_fd(), pipe.w.as_raw_fd(), want)
                    }) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        r => break r?,
                    }
                };
                return Ok((n > 0).then_some(Got::Piped(n)));
            }
        }
        let n = loop {
            src.readable().await?;
            match src.try_read(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => break r?,
            }
        };
        Ok((n > 0).then_some(Got::Read(n)))
    }

    /// Gives everything `got` holds to `dst`.
    pub(super) async fn give(&self, dst: &impl Socket, got: Got) -> io::Result<()> {
        let (pipe, len) = match got {
            Got::Read(n) => (None, n),
            Got::Piped(n) => (
                Some(self.pipe.as_ref().expect("piped bytes are in the pipe")),
                n,
            ),
        };
        let mut done = 0;
        while done < len {
            dst.writable().await?;
            let r = match pipe {
                Some(p) => dst.try_io(Interest::WRITABLE, || {
                    splice(p.r.as_raw_fd(), dst.as_raw_fd(), len - done)
                }),
                None => dst.try_write(&self.buf[done..len]),
            };
            match r {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A non-blocking pipe that spliced bytes pass through.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors we own.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe means fewer splices; the default size still works.
        // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE as libc::c_int) };
        Ok(Pipe { r, w })
    }
}

/// Moves up to `len` bytes from `from` to `to`, one of which is a pipe.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    // SAFETY: plain descriptors and null offsets (neither side seeks).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
