//! `tcpb status` and `tcpb stop`: they talk to a running broker and never
//! start one. The live view is `watch`.

use crate::client::connect;
use crate::config::Config;
use crate::paths::Paths;
use crate::protocol::{HostState, Request, Response, StatusSnapshot};
use anyhow::{Result, bail};
use std::io::Write;

/// The farm this user's compiles would use, without a broker, with the
/// counters and learned speeds the last broker saved.
fn configured(paths: &Paths) -> Result<StatusSnapshot> {
    let list = crate::hosts::load(|k| std::env::var_os(k))?;
    let config = Config::load(&paths.config_file)?;
    Ok(crate::broker::offline_status(paths, list, config))
}

/// The broker's snapshot, or the configured farm when none runs.
pub(crate) fn snapshot(paths: &Paths) -> Result<StatusSnapshot> {
    Ok(match connect::call(paths, Request::Status, false)? {
        Some(Response::Status(s)) => *s,
        Some(Response::Error { message }) => bail!("broker: {message}"),
        Some(other) => bail!("unexpected answer from the broker: {other:?}"),
        None => configured(paths)?,
    })
}

/// `tcpb status [--json]`.
pub(crate) fn status(paths: &Paths, json: bool) -> Result<()> {
    let snap = snapshot(paths)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &snap)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &snap, paths, use_color())?;
    }
    Ok(())
}

/// Colour when stdout is a terminal and `NO_COLOR` is unset.
/// `text` as it may reach a terminal: control characters (escape
/// sequences in a file or host name) are shown escaped, not obeyed.
pub(crate) fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

pub(crate) fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// `text` padded to `width`, in the colour of `state` when `color`.
pub(crate) fn state_cell(state: HostState, width: usize, color: bool) -> String {
    state_text(state, None, width, color)
}

/// `state` (with `, AGE ago` when it was seen `seen_s` ago) padded to
/// `width`, in the colour of `state` when `color`.
fn state_text(state: HostState, seen_s: Option<u64>, width: usize, color: bool) -> String {
    let name = format!("{state:?}").to_lowercase();
    let shown = match seen_s {
        Some(age) => format!("{name}, {} ago", duration(age)),
        None => name,
    };
    let text = format!("{shown:<width$}");
    if !color {
        return text;
    }
    let code = match state {
        HostState::Up => "32",
        HostState::Suspect => "33",
        HostState::Down => "31",
        HostState::Draining | HostState::Disabled | HostState::Unknown => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Seconds as milliseconds below 10 s, else seconds.
fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{:.0}ms", s * 1000.0)
    } else {
        format!("{s:.1}s")
    }
}

fn duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The status table.
pub(crate) fn write_table(
    out: &mut impl Write,
    s: &StatusSnapshot,
    paths: &Paths,
    color: bool,
) -> std::io::Result<()> {
    match &s.broker {
        Some(b) => writeln!(
            out,
            "broker  pid {}, up {}, tcpb {}",
            b.pid,
            duration(b.uptime_s),
            b.version
        )?,
        None => writeln!(
            out,
            "broker  not running (it starts with the first compile; socket {})",
            paths.socket().display()
        )?,
    }
    writeln!(out, "farm    {}", s.farm_origin)?;
    write_lists(out, &s.lists)?;
    if s.broker.is_none() {
        // No compile counts to give: the hosts' saved counters follow.
        writeln!(out)?;
        return write_hosts(out, s, color);
    }
    writeln!(
        out,
        "jobs    {} running, {} waiting; {} compiles ({} remote, {} local), {} fell back to local, {} queue timeouts, {} over limits",
        s.running,
        s.queued,
        s.granted,
        // A compile that fell back was granted a farm host, but ran here.
        s.granted
            .saturating_sub(s.granted_local)
            .saturating_sub(s.fell_back),
        s.granted_local,
        s.fell_back,
        s.queue_timeouts,
        s.over_limit
    )?;
    match (s.wait_mean_s, s.wait_p95_s) {
        (Some(m), Some(p)) => writeln!(
            out,
            "wait    in the queue: mean {}, p95 {}\n",
            secs(m),
            secs(p)
        )?,
        _ => writeln!(out)?,
    }
    if let Some(t) = &s.team {
        crate::status_team::write_team(out, t)?;
    }
    write_hosts(out, s, color)
}

/// The host lists compiles are using, and which builds use each.
fn write_lists(out: &mut impl Write, lists: &[crate::protocol::ListStatus]) -> std::io::Result<()> {
    for (i, l) in lists.iter().enumerate() {
        let head = if i == 0 { "lists" } else { "" };
        let origin = if l.origin.is_empty() {
            "no list"
        } else {
            &l.origin
        };
        let using = match l.builds.as_slice() {
            [] => format!("idle {}", duration(l.idle_s)),
            [one] => format!("build {one}, {} compiles", l.compiles),
            many => {
                let ids: Vec<String> = many.iter().map(u32::to_string).collect();
                format!("builds {}, {} compiles", ids.join(" "), l.compiles)
            }
        };
        writeln!(out, "{head:<7} {origin}: {} ({using})", l.hosts.join(" "))?;
        for why in &l.skipped {
            writeln!(out, "        not used: {why}")?;
        }
    }
    Ok(())
}

/// The host table, then the queue.
fn write_hosts(out: &mut impl Write, s: &StatusSnapshot, color: bool) -> std::io::Result<()> {
    let names: Vec<String> = s
        .hosts
        .iter()
        .map(|h| {
            if h.local_only {
                format!("{} (local jobs)", shown(&h.name))
            } else {
                shown(&h.name).into_owned()
            }
        })
        .collect();
    let w = names.iter().map(String::len).max().unwrap_or(4).max(4);
    // With no broker, a state is the last one seen, with its age.
    let sw = s
        .hosts
        .iter()
        .map(|h| state_text(h.state, h.seen_s, 0, false).len())
        .max()
        .unwrap_or(0)
        .max(9);
    writeln!(
        out,
        "{:<w$}  {:<sw$}  {:>7}  {:>5}  {:>7}  {:>6}  {:>7}  {:>5}  {:>5}  LAST ERROR",
        "HOST", "STATE", "SLOTS", "SPEED", "LEARNED", "JOBS", "MEAN", "FAILS", "LOCAL"
    )?;
    for (h, name) in s.hosts.iter().zip(&names) {
        let state = state_text(h.state, h.seen_s, sw, color);
        let err = match (&h.last_error, h.last_error_age_s) {
            (Some(e), Some(age)) => format!("{} ({} ago)", shown(e), duration(age)),
            (Some(e), None) => shown(e).into_owned(),
            _ => "-".to_string(),
        };
        writeln!(
            out,
            "{name:<w$}  {state}  {:>7}  {:>5.1}  {:>7}  {:>6}  {:>7}  {:>5}  {:>5}  {err}",
            format!("{}/{}", h.busy, h.slots),
            h.speed,
            h.learned_speed
                .map_or("-".to_string(), |s| format!("{s:.2}")),
            h.jobs,
            h.mean_job_s.map_or("-".to_string(), secs),
            h.failures,
            h.fallbacks
        )?;
    }
    write_queue(out, s)
}

/// The first compiles waiting, and how many more.
fn write_queue(out: &mut impl Write, s: &StatusSnapshot) -> std::io::Result<()> {
    if s.queue.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nQUEUE  WAITED  PID      SOURCE")?;
    for q in &s.queue {
        let src = shown(q.source.as_deref().unwrap_or("(local job)"));
        writeln!(
            out,
            "{:>5}  {:>5.1}s  {:<7}  {src}",
            q.position, q.waited_s, q.pid
        )?;
    }
    if s.queued as usize > s.queue.len() {
        writeln!(out, "  … and {} more", s.queued as usize - s.queue.len())?;
    }
    Ok(())
}

/// `tcpb stop`: returns once the broker has exited, its state saved (it
/// first lets running compiles finish, for `shutdown_grace_s`). A broker
/// of another protocol version is sent SIGTERM.
pub(crate) fn stop(paths: &Paths) -> Result<()> {
    let pid = match connect::ask(paths, Request::Stop, false)? {
        None => {
            println!("tcpb: no broker running");
            return Ok(());
        }
        Some(connect::Answer::Msg(m)) if m.resp == Response::Stopping => m.pid,
        Some(connect::Answer::Msg(m)) => bail!("unexpected answer from the broker: {:?}", m.resp),
        Some(connect::Answer::OtherVersion { v, pid: 0 }) => bail!(
            "the broker at {} speaks protocol {v} and gives no pid: stop it by hand",
            paths.socket().display()
        ),
        Some(connect::Answer::OtherVersion { v, pid }) => {
            println!("tcpb: the broker (pid {pid}) speaks protocol {v}; sending it SIGTERM");
            if let Err(e) = connect::terminate(pid) {
                bail!("cannot signal the broker (pid {pid}): {e}");
            }
            pid
        }
    };
    let waited = connect::wait_exit(paths, pid, || {
        println!("tcpb: waiting for the broker (pid {pid}) to finish its running compiles")
    });
    if let Err(limit) = waited {
        bail!(
            "the broker (pid {pid}) did not exit within {}s",
            limit.as_secs()
        );
    }
    println!("tcpb: broker stopped");
    Ok(())
}
