//! The optional HTTP endpoint (`[http] listen`): `/status`, the same JSON
//! as `tcpb status --json`, and `/metrics` in Prometheus' text format.
//! Read-only; loopback unless the config says `public = true`.

use super::state::Broker;
use crate::protocol::{HostState, HostStatus, StatusSnapshot};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// Serves `addr` until the task is aborted. A bind failure is logged; the
/// broker goes on without the endpoint.
pub(super) async fn serve(broker: Broker, addr: SocketAddr) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("[http] cannot listen on {addr}: {e}; no HTTP endpoint");
            return;
        }
    };
    tracing::info!(%addr, "HTTP endpoint: /status, /metrics");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let broker = broker.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&broker, &req)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(io, service);
            if let Err(e) = conn.await {
                tracing::debug!("HTTP connection: {e}");
            }
        });
    }
}

fn answer(broker: &Broker, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, kind: &str, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", kind)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/status" => {
            let json = serde_json::to_string_pretty(&broker.snapshot()).unwrap_or_default();
            reply(StatusCode::OK, "application/json", json + "\n")
        }
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics(&broker.snapshot()),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /status or /metrics\n".into(),
        ),
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub(super) fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// One per-host metric: name, type, help, and its value of a host (none:
/// no line for that host).
type HostMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&HostStatus) -> Option<String>,
);

const HOST_METRICS: &[HostMetric] = &[
    ("tcpb_host_slots", "gauge", "Slots of the host.", |h| {
        Some(h.slots.to_string())
    }),
    ("tcpb_host_busy_slots", "gauge", "Slots in use.", |h| {
        Some(h.busy.to_string())
    }),
    (
        "tcpb_host_jobs_total",
        "counter",
        "Jobs the host finished.",
        |h| Some(h.jobs.to_string()),
    ),
    (
        "tcpb_host_failures_total",
        "counter",
        "Failures the relay saw.",
        |h| Some(h.failures.to_string()),
    ),
    (
        "tcpb_host_learned_speed",
        "gauge",
        "Speed learned from recent jobs, in the units of the configured speed.",
        |h| h.learned_speed.map(|l| l.to_string()),
    ),
];

/// One broker-wide metric: name, type, help, and its value.
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StatusSnapshot) -> String,
);

const METRICS: &[Metric] = &[
    (
        "tcpb_queue_length",
        "gauge",
        "Compiles waiting for a slot.",
        |s| s.queued.to_string(),
    ),
    ("tcpb_running", "gauge", "Compiles holding a slot.", |s| {
        s.running.to_string()
    }),
    (
        "tcpb_compiles_total",
        "counter",
        "Compiles granted a slot.",
        |s| s.granted.to_string(),
    ),
    (
        "tcpb_compiles_local_total",
        "counter",
        "Compiles granted a slot on this machine.",
        |s| s.granted_local.to_string(),
    ),
    (
        "tcpb_fell_back_total",
        "counter",
        "Jobs a failing host lost, compiled locally.",
        |s| s.fell_back.to_string(),
    ),
];

const STATES: [HostState; 6] = [
    HostState::Up,
    HostState::Unknown,
    HostState::Suspect,
    HostState::Down,
    HostState::Draining,
    HostState::Disabled,
];

/// Writes one metric family: its help, its type, then its rows of
/// (labels, value).
pub(super) fn family(
    m: &mut String,
    (name, kind, help): (&str, &str, &str),
    rows: Vec<(String, String)>,
) {
    let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(m, "{name}{labels} {value}");
    }
}

/// The snapshot in Prometheus' text exposition format.
pub(crate) fn metrics(s: &StatusSnapshot) -> String {
    let mut m = String::new();
    let hosts: Vec<_> = s.hosts.iter().filter(|h| !h.local_only).collect();
    let host_label = |h: &HostStatus| format!("host=\"{}\"", label(&h.name));
    for (name, kind, help, value) in HOST_METRICS {
        let rows = hosts
            .iter()
            .filter_map(|h| Some((format!("{{{}}}", host_label(h)), value(h)?)))
            .collect();
        family(&mut m, (name, kind, help), rows);
    }
    let state_rows = hosts
        .iter()
        .flat_map(|h| {
            STATES.iter().map(move |st| {
                let name = format!("{st:?}").to_lowercase();
                let labels = format!("{{{},state=\"{name}\"}}", host_label(h));
                (labels, u8::from(h.state == *st).to_string())
            })
        })
        .collect();
    let help = "1 for the host's current state.";
    family(&mut m, ("tcpb_host_state", "gauge", help), state_rows);
    for (name, kind, help, value) in METRICS {
        family(&mut m, (name, kind, help), vec![(String::new(), value(s))]);
    }
    let mut buckets: Vec<(String, String)> = s
        .wait_histogram
        .iter()
        .map(|(le, n)| (format!("_bucket{{le=\"{le}\"}}"), n.to_string()))
        .collect();
    buckets.push(("_bucket{le=\"+Inf\"}".into(), s.wait_count.to_string()));
    buckets.push(("_sum".into(), s.wait_sum_s.to_string()));
    buckets.push(("_count".into(), s.wait_count.to_string()));
    let help = "Time compiles waited for a slot.";
    family(
        &mut m,
        ("tcpb_queue_wait_seconds", "histogram", help),
        buckets,
    );
    if let Some(t) = &s.team {
        super::http_team::metrics(&mut m, t);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text() {
        let h = HostStatus {
            state: HostState::Down,
            learned_speed: Some(2.5),
            samples: 3,
            jobs: 7,
            failures: 2,
            ..HostStatus::example("b\"1")
        };
        let s = StatusSnapshot {
            queued: 3,
            running: 1,
            granted: 9,
            granted_local: 2,
            wait_histogram: vec![(0.1, 4), (1.0, 8)],
            wait_sum_s: 2.5,
            wait_count: 9,
            hosts: vec![h],
            ..StatusSnapshot::default()
        };
        let m = metrics(&s);
        for line in [
            "tcpb_host_busy_slots{host=\"b\\\"1\"} 1",
            "tcpb_host_state{host=\"b\\\"1\",state=\"down\"} 1",
            "tcpb_host_state{host=\"b\\\"1\",state=\"up\"} 0",
            "tcpb_host_learned_speed{host=\"b\\\"1\"} 2.5",
            "tcpb_queue_length 3",
            "tcpb_queue_wait_seconds_bucket{le=\"1\"} 8",
            "tcpb_queue_wait_seconds_bucket{le=\"+Inf\"} 9",
            "tcpb_queue_wait_seconds_count 9",
            "# TYPE tcpb_queue_wait_seconds histogram",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
    }
}
