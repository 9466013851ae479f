//! Team mode's Prometheus metrics: etcd's state and round trips, this
//! broker's claims and share, and who holds each host's slots.

use super::http::{family, label};
use crate::protocol::TeamStatus;

/// The team's metric families, appended to `m`.
pub(crate) fn metrics(m: &mut String, t: &TeamStatus) {
    let rows = ["connecting", "connected", "unreachable", "rejoining"]
        .iter()
        .map(|st| {
            let labels = format!("{{state=\"{st}\"}}");
            (labels, u8::from(t.state == *st).to_string())
        })
        .collect();
    let help = "1 for the state of this broker's session with etcd.";
    family(m, ("tcpb_team_state", "gauge", help), rows);
    let counters = [
        (
            "tcpb_team_etcd_calls_total",
            "Calls to etcd answered.",
            t.etcd_calls,
        ),
        (
            "tcpb_team_etcd_failures_total",
            "Calls to etcd no member answered.",
            t.etcd_failures,
        ),
        (
            "tcpb_team_etcd_writes_total",
            "Keys this broker wrote to etcd.",
            t.etcd_writes,
        ),
        (
            "tcpb_team_etcd_conflicts_total",
            "Slots this broker asked etcd for that another broker had taken.",
            t.etcd_conflicts,
        ),
    ];
    for (name, help, value) in counters {
        family(
            m,
            (name, "counter", help),
            vec![(String::new(), value.to_string())],
        );
    }
    gauges(m, t);
}

/// This broker's claims and share, and the team's size and holders.
fn gauges(m: &mut String, t: &TeamStatus) {
    let me = t.brokers.iter().find(|b| b.id == t.me);
    let gauges = [
        (
            "tcpb_team_claims",
            "Slots this broker holds.",
            me.map_or(0, |b| b.held),
        ),
        (
            "tcpb_team_share",
            "This broker's fair share of the farm's slots.",
            me.map_or(0, |b| b.share),
        ),
        (
            "tcpb_team_brokers",
            "Live brokers of the team.",
            t.brokers.len() as u32,
        ),
        (
            "tcpb_team_uncoordinated_hosts",
            "Hosts this broker uses that the team does not know.",
            t.uncoordinated.len() as u32,
        ),
    ];
    for (name, help, value) in gauges {
        family(
            m,
            (name, "gauge", help),
            vec![(String::new(), value.to_string())],
        );
    }
    let held = t
        .hosts
        .iter()
        .flat_map(|h| {
            h.holders.iter().map(move |(id, n)| {
                let labels = format!("{{host=\"{}\",broker=\"{}\"}}", label(&h.name), label(id));
                (labels, n.to_string())
            })
        })
        .collect();
    let help = "Slots of the host each broker of the team holds.";
    family(m, ("tcpb_team_host_claims", "gauge", help), held);
}

#[cfg(test)]
mod tests {
    use crate::protocol::TeamStatus;

    #[test]
    fn team_metrics() {
        let mut m = String::new();
        super::metrics(&mut m, &TeamStatus::example());
        for line in [
            "tcpb_team_state{state=\"connected\"} 1",
            "tcpb_team_state{state=\"unreachable\"} 0",
            "tcpb_team_etcd_calls_total 12",
            "tcpb_team_etcd_failures_total 1",
            "tcpb_team_etcd_writes_total 5",
            "tcpb_team_etcd_conflicts_total 2",
            "tcpb_team_uncoordinated_hosts 1",
            "tcpb_team_claims 1",
            "tcpb_team_share 2",
            "tcpb_team_brokers 2",
            "tcpb_team_host_claims{host=\"b\\\"1\",broker=\"bob@ws2:9\"} 3",
            "# TYPE tcpb_team_host_claims gauge",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in:\n{m}");
        }
    }
}
