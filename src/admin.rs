//! `tcpb host …` and `tcpb reload` on the client side: send the change to
//! the broker (starting it if needed) and print what changed.

use crate::client::connect;
use crate::paths::Paths;
use crate::protocol::{HostCmd, Request, Response};
use anyhow::{Result, bail};

fn send(paths: &Paths, req: Request, start: bool) -> Result<Option<String>> {
    match connect::call(paths, req, start)? {
        None => Ok(None),
        Some(Response::Done { message }) => Ok(Some(message)),
        Some(Response::Error { message }) => bail!("{message}"),
        Some(other) => bail!("unexpected answer from the broker: {other:?}"),
    }
}

/// `tcpb host …`: the broker is started if none runs, since the change must
/// be applied and kept.
pub(crate) fn host(paths: &Paths, cmd: HostCmd, team: bool) -> Result<()> {
    if let HostCmd::Add { spec, .. } = &cmd {
        // Say what is wrong with the spec before starting anything.
        crate::hosts::parse(spec, "tcpb host add")?;
    }
    let farm = crate::hosts::load(|k| std::env::var_os(k))?;
    let msg = send(paths, Request::Host { cmd, farm, team }, true)?.unwrap_or_default();
    println!("tcpb: {msg}");
    Ok(())
}

/// `tcpb reload`.
pub(crate) fn reload(paths: &Paths) -> Result<()> {
    match send(paths, Request::Reload, false)? {
        Some(msg) => println!("tcpb: {msg}"),
        None => println!("tcpb: no broker running; the config is read when it starts"),
    }
    Ok(())
}
