//! `tcpb host … --team`: changes to the team's farm definition in etcd
//! (`hosts/NAME`), which every broker's watch applies within a second.
//! Running compiles finish; only new ones follow the change.

use super::driver::Team;
use super::view::{TeamAdmin, TeamHost, View};
use crate::hosts::HostEntry;
use crate::protocol::HostCmd;

impl Team {
    /// Applies `cmd` to the team's farm; the answer says what changed.
    pub(crate) async fn admin(&self, cmd: &HostCmd) -> Result<String, String> {
        let (name, host, message) = {
            let inner = self.lock();
            change(&inner.view, cmd)?
        };
        let key = self.key(&format!("hosts/{name}"));
        let value = serde_json::to_string(&host).expect("serialises");
        self.etcd
            .put(&key, &value, 0)
            .await
            .map_err(|e| format!("{e}; the team's farm is unchanged"))?;
        let _ = self.lock().view.apply(&key, Some(&value));
        self.wake();
        tracing::info!("team admin: {message}");
        Ok(format!("{message} for team farm {}", self.config.farm))
    }
}

/// The team's host a name refers to: as written, or with distcc's port.
fn known(view: &View, name: &str) -> Result<(String, TeamHost), String> {
    let with_port = format!("{name}:3632");
    [name, with_port.as_str()]
        .iter()
        .find_map(|n| view.hosts.get(*n).map(|h| (n.to_string(), *h)))
        .ok_or_else(|| format!("the team's farm has no host {name}"))
}

/// The host `cmd` changes, its new definition and what to tell the user.
fn change(view: &View, cmd: &HostCmd) -> Result<(String, TeamHost, String), String> {
    let admin = |name: &str, admin: Option<TeamAdmin>, what: &str| {
        let (name, mut host) = known(view, name)?;
        host.admin = admin;
        Ok((name.clone(), host, format!("{what} {name}")))
    };
    match cmd {
        HostCmd::Add { spec, speed } => add(spec, *speed),
        HostCmd::Remove { name, .. } => admin(name, Some(TeamAdmin::Removed), "removed"),
        HostCmd::Drain { name } => admin(name, Some(TeamAdmin::Drain), "draining"),
        HostCmd::Disable { name } => admin(name, Some(TeamAdmin::Disabled), "disabled"),
        HostCmd::Enable { name } => admin(name, None, "enabled"),
        HostCmd::Set { name, slots, speed } => set(view, name, *slots, *speed),
        HostCmd::Reset => Err("--team has no reset: enable or set each host".to_string()),
    }
}

/// `add SPEC --team`: defines (or redefines) a host for the team.
fn add(spec: &str, speed: Option<f64>) -> Result<(String, TeamHost, String), String> {
    let list = crate::hosts::parse(spec, "tcpb host add --team").map_err(|e| e.to_string())?;
    let (name, slots) = match list.entries.as_slice() {
        [e @ (HostEntry::Tcp { slots, .. } | HostEntry::Ssh { slots, .. })] => (e.name(), *slots),
        _ => return Err(format!("{spec}: give one farm host to add to the team")),
    };
    if let Some(s) = speed {
        crate::limits::speed(s)?;
    }
    crate::limits::slots(slots)?;
    let host = TeamHost {
        slots,
        speed,
        admin: None,
    };
    Ok((name.clone(), host, format!("added {name} ({slots} slots)")))
}

/// `set NAME --slots N --speed S --team`.
fn set(
    view: &View,
    name: &str,
    slots: Option<u32>,
    speed: Option<f64>,
) -> Result<(String, TeamHost, String), String> {
    let (name, mut host) = known(view, name)?;
    if slots.is_none() && speed.is_none() {
        return Err("nothing to set: give --slots and/or --speed".to_string());
    }
    if let Some(n) = slots {
        host.slots = crate::limits::slots(n)?;
    }
    if let Some(s) = speed {
        host.speed = Some(crate::limits::speed(s)?);
    }
    let message = format!("set {name}: {} slots, speed {:?}", host.slots, host.speed);
    Ok((name, host, message))
}
