//! `tcpb host …` and `tcpb reload` on the client side: send the change to
//! the broker (starting it if needed) and print what changed.

use crate::client::connect;
use crate::frame;
use crate::paths::Paths;
use crate::protocol::{BrokerMsg, ClientMsg, HostCmd, PROTOCOL_VERSION, Request, Response};
use anyhow::{Context, Result, anyhow, bail};

fn send(paths: &Paths, req: Request, start: bool) -> Result<Option<String>> {
    let conn = if start {
        let mut started = false;
        Some(connect::connect_or_start(paths, &mut started).context("cannot reach the broker")?)
    } else {
        connect::connect(paths).ok()
    };
    let Some(mut conn) = conn else {
        return Ok(None);
    };
    frame::write_sync(
        &mut conn,
        &ClientMsg {
            v: PROTOCOL_VERSION,
            req,
        },
    )?;
    let payload =
        frame::read_sync(&mut conn)?.ok_or_else(|| anyhow!("the broker closed the connection"))?;
    let msg: BrokerMsg = frame::decode(&payload).context("cannot read the broker's answer")?;
    match msg.resp {
        Response::Done { message } => Ok(Some(message)),
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the broker: {other:?}"),
    }
}

/// `tcpb host …`: the broker is started if none runs, since the change must
/// be applied and kept.
pub fn host(paths: &Paths, cmd: HostCmd) -> Result<()> {
    if let HostCmd::Add { spec, .. } = &cmd {
        // Say what is wrong with the spec before starting anything.
        crate::hosts::parse(spec, "tcpb host add")?;
    }
    let farm = crate::hosts::load(|k| std::env::var_os(k))?;
    let msg = send(paths, Request::Host { cmd, farm }, true)?.unwrap_or_default();
    println!("tcpb: {msg}");
    Ok(())
}

/// `tcpb reload`.
pub fn reload(paths: &Paths) -> Result<()> {
    match send(paths, Request::Reload, false)? {
        Some(msg) => println!("tcpb: {msg}"),
        None => println!("tcpb: no broker running; the config is read when it starts"),
    }
    Ok(())
}
