//! Team mode's section of `tcpb status`: etcd's state, the team's brokers
//! and who holds each host's slots.

use crate::protocol::TeamStatus;
use crate::status::shown;
use std::io::Write;

/// Writes the team section.
pub(crate) fn write_team(out: &mut impl Write, t: &TeamStatus) -> std::io::Result<()> {
    writeln!(
        out,
        "team    farm {} at {}: {}, as {} (offline: {})",
        shown(&t.farm),
        shown(&t.endpoints.join(", ")),
        t.state,
        shown(&t.me),
        t.offline
    )?;
    if let Some(e) = &t.last_error {
        writeln!(out, "        etcd: {}", shown(e))?;
    }
    writeln!(
        out,
        "        etcd calls {}, failed {}, writes {}, slots found taken {}",
        t.etcd_calls, t.etcd_failures, t.etcd_writes, t.etcd_conflicts
    )?;
    for name in &t.uncoordinated {
        let name = shown(name);
        writeln!(
            out,
            "        warning: host {name} is not in the team's farm: used uncoordinated \
             (`tcpb host add {name} --team` shares it)"
        )?;
    }
    write_brokers(out, t)?;
    write_hosts(out, t)?;
    writeln!(out)
}

/// The team's brokers, this one marked.
fn write_brokers(out: &mut impl Write, t: &TeamStatus) -> std::io::Result<()> {
    if t.brokers.is_empty() {
        writeln!(out, "        no broker of the team known yet")?;
    } else {
        writeln!(
            out,
            "        {:<32} {:>6} {:>6} {:>5} {:>5}",
            "BROKER", "BUILDS", "DEMAND", "HELD", "SHARE"
        )?;
    }
    for b in &t.brokers {
        let mark = if b.id == t.me { " (this one)" } else { "" };
        writeln!(
            out,
            "        {:<32} {:>6} {:>6} {:>5} {:>5}{mark}",
            shown(&b.id),
            b.builds,
            b.demand,
            b.held,
            b.share
        )?;
    }
    Ok(())
}

/// The team's hosts, who probes them and who holds their slots.
fn write_hosts(out: &mut impl Write, t: &TeamStatus) -> std::io::Result<()> {
    for h in &t.hosts {
        let held: u32 = h.holders.iter().map(|x| x.1).sum();
        let who: Vec<String> = h
            .holders
            .iter()
            .map(|(id, n)| format!("{} {n}", shown(id)))
            .collect();
        let prober = h.prober.as_deref().map_or("none".into(), shown);
        writeln!(
            out,
            "        host {} ({}, probed by {prober}) {held}/{} held{}{}",
            shown(&h.name),
            h.health,
            h.slots,
            if who.is_empty() { "" } else { ": " },
            who.join(", ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_team_section_names_brokers_holders_and_probers() {
        let mut out = Vec::new();
        super::write_team(&mut out, &crate::protocol::TeamStatus::example()).unwrap();
        let text = String::from_utf8(out).unwrap();
        for want in [
            "team    farm lab at http://e:2379: connected, as ann@ws1:7",
            "ann@ws1:7",
            "(this one)",
            "host b\"1 (up, probed by bob@ws2:9) 4/4 held: bob@ws2:9 3, ann@ws1:7 1",
            "etcd calls 12, failed 1, writes 5, slots found taken 2",
            "warning: host solo:3632 is not in the team's farm: used uncoordinated",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}
