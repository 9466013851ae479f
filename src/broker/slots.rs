//! What this broker may use of the farm right now. The broker asks this
//! one interface how many of each host's slots it may fill; the scheduler
//! takes the answer as each host's capacity, which may grow or shrink at
//! any moment without disturbing compiles already running (a host over its
//! capacity simply gets no new job until enough of them end).
//!
//! Alone, a broker may use every configured slot (`AllSlots`). Team mode
//! answers with the slots this broker has claimed in etcd.

use crate::farm::HostSpec;

/// The source of this broker's capacity on each host. Called with the
/// broker's state locked: an implementation takes only locks of its own
/// that it never holds while calling into the broker.
pub(crate) trait Slots: Send {
    /// How many of `host`'s `host.slots` configured slots this broker may
    /// use now (never more than configured).
    fn usable(&self, host: &HostSpec) -> u32;

    /// True when a host with no usable slot may soon have some (team mode
    /// while etcd answers: a claim is on its way), so compiles wait for
    /// it; false sends them to this machine's own slots instead.
    fn may_grow(&self) -> bool {
        false
    }

    /// A compile asked for a slot or ended: what this broker needs changed.
    fn demand_changed(&self) {}

    /// Team mode's part of `tcpb status`.
    fn status(&self) -> Option<crate::protocol::TeamStatus> {
        None
    }

    /// Applies what the team decided about hosts (speed, out of service)
    /// to the farm built from the lists, config and overlay.
    fn amend(&self, _farm: &mut crate::farm::Farm) {}

    /// True when this broker probes `host` (team mode: one broker probes
    /// each host for the whole team and tells the others).
    fn probes(&self, _host: &HostSpec) -> bool {
        true
    }

    /// The team, for `tcpb host … --team`.
    fn team(&self) -> Option<std::sync::Arc<super::team::driver::Team>> {
        None
    }
}

/// A broker on its own: every configured slot.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AllSlots;

impl Slots for AllSlots {
    fn usable(&self, host: &HostSpec) -> u32 {
        host.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::Admin;

    #[test]
    fn alone_every_configured_slot_is_usable() {
        let h = HostSpec {
            name: "b:3632".into(),
            addr: Some(("b".into(), 3632)),
            ssh: None,
            slots: 7,
            speed: 1.0,
            lzo: false,
            cpp: false,
            admin: Admin::Active,
        };
        assert_eq!(AllSlots.usable(&h), 7);
    }
}
