//! Who is on the other end of a loopback TCP connection: the uid that owns
//! the peer socket, asked of the kernel with one exact `sock_diag` lookup
//! (netlink `SOCK_DIAG_BY_FAMILY` with the connection's four-tuple, the
//! query `ss` makes), so the cost does not grow with the sockets on the
//! machine as reading `/proc/net/tcp` would.

use std::io;
use std::net::SocketAddrV4;

const SOCK_DIAG_BY_FAMILY: u16 = 20;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u8; 16],
    dst: [u8; 16],
    interface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Request {
    nl_len: u32,
    nl_type: u16,
    nl_flags: u16,
    nl_seq: u32,
    nl_pid: u32,
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

/// Offset of `idiag_uid` in a reply: the netlink header (16 bytes), then
/// family, state, timer, retrans (4), the socket id (48), expires, rqueue
/// and wqueue (12).
const UID_AT: usize = 16 + 4 + 48 + 12;
/// Where the socket's TCP state is: after the header and the family.
const STATE_AT: usize = 16 + 1;
/// The kernel's `TCP_ESTABLISHED`.
const TCP_ESTABLISHED: u8 = 1;

/// The uid owning the TCP socket whose local address is `sock` and whose
/// peer is `peer` (both IPv4). `None` when the kernel knows no such socket.
pub(crate) fn tcp_socket_uid(sock: SocketAddrV4, peer: SocketAddrV4) -> io::Result<Option<u32>> {
    let mut id = SockId {
        sport: sock.port().to_be_bytes(),
        dport: peer.port().to_be_bytes(),
        cookie: [u32::MAX; 2],
        ..SockId::default()
    };
    id.src[..4].copy_from_slice(&sock.ip().octets());
    id.dst[..4].copy_from_slice(&peer.ip().octets());
    let req = Request {
        nl_len: std::mem::size_of::<Request>() as u32,
        nl_type: SOCK_DIAG_BY_FAMILY,
        nl_flags: libc::NLM_F_REQUEST as u16,
        family: libc::AF_INET as u8,
        protocol: libc::IPPROTO_TCP as u8,
        states: u32::MAX,
        id,
        ..Request::default()
    };
    // SAFETY: plain socket calls on a descriptor owned here and closed
    // before returning; buffers are valid for the lengths passed.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let close = |r: io::Result<Option<u32>>| {
            libc::close(fd);
            r
        };
        let sent = libc::send(
            fd,
            (&raw const req).cast(),
            std::mem::size_of::<Request>(),
            0,
        );
        if sent < 0 {
            return close(Err(io::Error::last_os_error()));
        }
        let mut buf = [0u8; 512];
        let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
        if n < 0 {
            return close(Err(io::Error::last_os_error()));
        }
        let n = n as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        // A socket past ESTABLISHED is a client already gone, and one in
        // TIME_WAIT has no owner (the kernel says uid 0): neither is ours.
        if kind == SOCK_DIAG_BY_FAMILY && n >= UID_AT + 4 && buf[STATE_AT] == TCP_ESTABLISHED {
            let uid = u32::from_ne_bytes(buf[UID_AT..UID_AT + 4].try_into().expect("4 bytes"));
            return close(Ok(Some(uid)));
        }
        // NLMSG_ERROR: no such socket (ENOENT), or another failure.
        close(Ok(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    fn v4(a: std::net::SocketAddr) -> SocketAddrV4 {
        match a {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => panic!("IPv4 expected"),
        }
    }

    #[test]
    fn finds_the_owner_of_the_other_end() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        let local = v4(server.local_addr().unwrap());
        let me = crate::sys::euid();
        assert_eq!(tcp_socket_uid(v4(peer), local).unwrap(), Some(me));
        drop(client);
        let nobody = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        assert_eq!(tcp_socket_uid(nobody, local).unwrap(), None);
    }

    #[test]
    fn a_client_that_closed_is_nobodys() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        // The client closes first: its socket lingers in FIN_WAIT or
        // TIME_WAIT, which the kernel reports as uid 0.
        drop(client);
        drop(server);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let local = v4(l.local_addr().unwrap());
        assert_eq!(tcp_socket_uid(v4(peer), local).unwrap(), None);
    }
}
