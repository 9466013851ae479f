//! `tcpb host …` on the broker side: each command changes the overlay; the
//! broker then applies the new farm at once (compiles in flight are not
//! disturbed) and saves the overlay so it survives a restart.

use super::State;
use crate::broker::relay::Relay;
use crate::broker::sched::HostId;
use crate::farm::{Admin, HostSpec};
use crate::hosts::{self, HostsError};
use crate::protocol::HostCmd;

/// Why a host command changed nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// The host as given does not parse.
    #[error(transparent)]
    Parse(#[from] HostsError),
    /// It names no host, or several.
    #[error("\"{0}\" is not one host")]
    NotOne(String),
    /// The farm has no such host.
    #[error("no host {0} in the farm (see tcpb status)")]
    NoSuchHost(String),
    /// `tcpb host set` with nothing to set.
    #[error("nothing to set: give --slots and/or --speed")]
    NothingToSet,
    /// A slot count or speed out of bounds (`limits`).
    #[error("{0}")]
    OutOfBounds(String),
    /// The change is in force but could not be written to disk.
    #[error("{done}, but it could not be saved: {error}; it lasts until the broker stops")]
    NotSaved {
        /// What changed.
        done: String,
        /// Why it was not saved.
        error: String,
    },
}

/// The one host `spec` names, parsed as the farm names it.
fn one_host(spec: &str, origin: &str) -> Result<HostSpec, AdminError> {
    let list = hosts::parse(spec, origin)?;
    match list.entries.as_slice() {
        [one] => Ok(HostSpec::from_entry(one)),
        _ => Err(AdminError::NotOne(spec.to_string())),
    }
}

/// `HOST[:PORT]` in the form the farm uses (`host:3632`), and its id.
fn existing(state: &State, name: &str) -> Result<(String, HostId), AdminError> {
    let name = one_host(name, "the command line")?.name;
    match state.sched.find(&name) {
        Some(id) => Ok((name, id)),
        None => Err(AdminError::NoSuchHost(name)),
    }
}

fn check_speed(speed: Option<f64>) -> Result<(), AdminError> {
    match speed {
        Some(s) => crate::limits::speed(s)
            .map(drop)
            .map_err(AdminError::OutOfBounds),
        None => Ok(()),
    }
}

/// Runs `cmd` on the overlay; returns what changed, for the user.
pub(super) fn execute(
    state: &mut State,
    relay: &Relay,
    cmd: &HostCmd,
) -> Result<String, AdminError> {
    Ok(match cmd {
        HostCmd::Add { spec, speed } => {
            let mut host = one_host(spec, "tcpb host add")?;
            check_speed(*speed)?;
            host.speed = speed.unwrap_or(host.speed);
            let slots = match host.slots {
                1 => "1 slot".to_string(),
                n => format!("{n} slots"),
            };
            let msg = format!("added {} ({slots}, speed {})", host.name, host.speed);
            state.overlay.add(host);
            msg
        }
        HostCmd::Remove { name, force } => remove(state, relay, name, *force)?,
        HostCmd::Drain { name } => {
            let (name, id) = existing(state, name)?;
            let busy = state.sched.host(id).busy;
            state.overlay.set_admin(&name, Admin::Drain);
            format!("draining {name}: no new jobs; {busy} running finish there")
        }
        HostCmd::Disable { name } => {
            let (name, _) = existing(state, name)?;
            state.overlay.set_admin(&name, Admin::Disabled);
            format!("disabled {name}")
        }
        HostCmd::Enable { name } => {
            let (name, _) = existing(state, name)?;
            state.overlay.set_admin(&name, Admin::Active);
            format!("enabled {name}")
        }
        HostCmd::Set { name, slots, speed } => set(state, name, *slots, *speed)?,
        HostCmd::Reset => {
            let n = state.overlay.len();
            state.overlay = Default::default();
            format!("dropped {n} runtime changes; back to the configured farm")
        }
    })
}

fn remove(state: &mut State, relay: &Relay, name: &str, force: bool) -> Result<String, AdminError> {
    let (name, id) = existing(state, name)?;
    let running = if force {
        // Their relays end: distcc compiles those jobs locally.
        let leases = state.sched.leases_on(id);
        for port in leases.iter().filter_map(|l| state.leases.get(l)?.port()) {
            relay.cut(port);
        }
        leases.len()
    } else {
        state.sched.host(id).busy as usize
    };
    state.overlay.remove(&name);
    Ok(match (force, running) {
        (_, 0) => format!("removed {name}"),
        (false, n) => format!("removed {name}; its {n} running jobs finish there"),
        (true, n) => {
            format!("removed {name}; ended its {n} running jobs (distcc compiles them locally)")
        }
    })
}

fn set(
    state: &mut State,
    name: &str,
    slots: Option<u32>,
    speed: Option<f64>,
) -> Result<String, AdminError> {
    let (name, id) = existing(state, name)?;
    if slots.is_none() && speed.is_none() {
        return Err(AdminError::NothingToSet);
    }
    if let Some(n) = slots {
        crate::limits::slots(n).map_err(AdminError::OutOfBounds)?;
    }
    check_speed(speed)?;
    let old = &state.sched.host(id).spec;
    let mut parts = Vec::new();
    if let Some(n) = slots {
        parts.push(format!("slots {} -> {n}", old.slots));
    }
    if let Some(s) = speed {
        parts.push(format!("speed {} -> {s}", old.speed));
    }
    let t = state.overlay.set.entry(name.clone()).or_default();
    t.slots = slots.or(t.slots);
    t.speed = speed.or(t.speed);
    Ok(format!("{name}: {}", parts.join(", ")))
}
