//! `tcpb host …` on the broker side: each command changes the overlay,
//! applies the new farm at once (compiles in flight are not disturbed) and
//! saves the overlay so it survives a restart.

use super::state::{Inner, Shared};
use crate::farm::{Admin, HostSpec};
use crate::hosts;
use crate::protocol::HostCmd;
use std::sync::Arc;
use std::time::Instant;

/// `HOST[:PORT]` or `localhost` in the form the farm uses (`host:3632`).
fn canonical(name: &str) -> Result<String, String> {
    let list = hosts::parse(name, "the command line").map_err(|e| e.to_string())?;
    match list.entries.as_slice() {
        [one] => Ok(one.name()),
        _ => Err(format!("\"{name}\" is not one host")),
    }
}

fn existing(inner: &Inner, name: &str) -> Result<(String, super::sched::HostId), String> {
    let name = canonical(name)?;
    match inner.sched.find(&name) {
        Some(id) => Ok((name, id)),
        None => Err(format!("no host {name} in the farm (see tcpb status)")),
    }
}

/// Runs `cmd`; returns what changed, or why nothing did.
pub fn execute(shared: &Arc<Shared>, inner: &mut Inner, cmd: &HostCmd) -> Result<String, String> {
    let msg = match cmd {
        HostCmd::Add { spec, speed } => {
            let list = hosts::parse(spec, "tcpb host add").map_err(|e| e.to_string())?;
            let [entry] = list.entries.as_slice() else {
                return Err(format!("\"{spec}\" is not one host"));
            };
            let mut host = HostSpec::from_entry(entry);
            if let Some(s) = speed {
                if !(s.is_finite() && *s > 0.0) {
                    return Err(format!("speed {s} is not a positive number"));
                }
                host.speed = *s;
            }
            let msg = format!(
                "added {} ({} slots, speed {})",
                host.name, host.slots, host.speed
            );
            inner.overlay.add(host);
            msg
        }
        HostCmd::Remove { name, force } => {
            let (name, id) = existing(inner, name)?;
            let running = if *force {
                Shared::end_jobs_on(inner, id)
            } else {
                inner.sched.host(id).busy as usize
            };
            inner.overlay.remove(&name);
            match (force, running) {
                (_, 0) => format!("removed {name}"),
                (false, n) => format!("removed {name}; its {n} running jobs finish there"),
                (true, n) => format!(
                    "removed {name}; ended its {n} running jobs (distcc compiles them locally)"
                ),
            }
        }
        HostCmd::Drain { name } => {
            let (name, id) = existing(inner, name)?;
            let busy = inner.sched.host(id).busy;
            inner.overlay.set_admin(&name, Admin::Drain);
            format!("draining {name}: no new jobs; {busy} running finish there")
        }
        HostCmd::Disable { name } => {
            let (name, _) = existing(inner, name)?;
            inner.overlay.set_admin(&name, Admin::Disabled);
            format!("disabled {name}")
        }
        HostCmd::Enable { name } => {
            let (name, _) = existing(inner, name)?;
            inner.overlay.set_admin(&name, Admin::Active);
            format!("enabled {name}")
        }
        HostCmd::Set { name, slots, speed } => {
            let (name, id) = existing(inner, name)?;
            if slots.is_none() && speed.is_none() {
                return Err("nothing to set: give --slots and/or --speed".to_string());
            }
            if *slots == Some(0) {
                return Err("slots must be at least 1".to_string());
            }
            if speed.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
                return Err("speed must be a positive number".to_string());
            }
            let old = inner.sched.host(id).spec.clone();
            let t = inner.overlay.set.entry(name.clone()).or_default();
            t.slots = slots.or(t.slots);
            t.speed = speed.or(t.speed);
            let mut parts = Vec::new();
            if let Some(n) = slots {
                parts.push(format!("slots {} -> {n}", old.slots));
            }
            if let Some(s) = speed {
                parts.push(format!("speed {} -> {s}", old.speed));
            }
            format!("{name}: {}", parts.join(", "))
        }
        HostCmd::Reset => {
            let n = inner.overlay.len();
            inner.overlay = Default::default();
            format!("dropped {n} runtime changes; back to the configured farm")
        }
    };
    shared.refresh(inner, Instant::now());
    shared.save(inner);
    tracing::info!("admin: {msg}");
    Ok(msg)
}
