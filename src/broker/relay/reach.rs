//! Reaching a host: a TCP connect to its distccd, or for an ssh host its
//! master connection and one ssh for the job. The same reach is a probe.

use super::ssh::{Masters, Session, SshEnv};
use super::{Target, Ticket, Via};
use std::time::Duration;
use tokio::net::TcpStream;

/// The relay's connection to a job's host, made before the grant.
pub(super) enum Upstream {
    /// distccd's TCP socket.
    Tcp(TcpStream),
    /// An ssh running `distccd --inetd` for the job.
    Ssh(Session),
}

/// Connects `ticket` to its target; the error says why, for the log and
/// the user.
pub(super) async fn connect(masters: &Masters, ticket: &Ticket) -> Result<Upstream, String> {
    let timeout = ticket.connect;
    match &ticket.target.via {
        Via::Tcp(host, port) => tcp(host, *port, timeout).await.map(Upstream::Tcp),
        Via::Ssh(host) => {
            let path = masters.ensure(host, ticket.env.as_ref(), timeout).await?;
            let env = ticket.env.as_deref().unwrap_or_default();
            let session = masters.session(host, env, &path);
            session
                .map(Upstream::Ssh)
                .map_err(|e| format!("cannot run ssh: {e}"))
        }
    }
}

/// Whether `target` answers within `timeout`: `None`, or why not. An ssh
/// host is up when its master connection is (started if need be, in the
/// environment of the last compile that used it).
pub(super) async fn probe(masters: &Masters, target: &Target, timeout: Duration) -> Option<String> {
    let none: Option<&SshEnv> = None;
    match &target.via {
        Via::Tcp(host, port) => tcp(host, *port, timeout).await.err(),
        Via::Ssh(host) => masters.ensure(host, none, timeout).await.err(),
    }
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("connect failed: {e}")),
        Err(_) => Err(format!(
            "connect timed out after {} ms",
            timeout.as_millis()
        )),
    }
}
