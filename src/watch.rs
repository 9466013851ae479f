//! `tcpb status --watch` and `tcpb top`: the live view, redrawn in place
//! like distccmon-text: one bar per host with the files compiling there and
//! for how long, the queue, and the compile rate. On a terminal it uses the
//! alternate screen and leaves the terminal as it was on exit and on
//! Ctrl-C; piped, it prints one frame after another.

use crate::paths::Paths;
use crate::protocol::StatusSnapshot;
use crate::status::{shown, snapshot, state_cell, use_color};
use anyhow::Result;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Files shown per host, and queued compiles shown.
const SHOWN: usize = 8;

/// Runs the live view until SIGINT or SIGTERM.
pub(crate) fn watch(paths: &Paths, interval: Duration) -> Result<()> {
    // The handler only stores to an atomic, which is async-signal-safe.
    for sig in [libc::SIGINT, libc::SIGTERM] {
        crate::sys::set_signal_handler(sig, on_signal as *const () as libc::sighandler_t);
    }
    let tty = {
        use std::io::IsTerminal;
        std::io::stdout().is_terminal()
    };
    let color = use_color();
    let mut out = std::io::stdout().lock();
    if tty {
        write!(out, "\x1b[?1049h\x1b[?25l")?;
    }
    let mut last: Option<(Instant, u64)> = None;
    let result = (|| -> Result<()> {
        while !STOP.load(Ordering::SeqCst) {
            let now = Instant::now();
            let frame = match snapshot(paths) {
                Ok(s) => {
                    let rate = last.map(|(t, g)| {
                        s.granted.saturating_sub(g) as f64 / now.duration_since(t).as_secs_f64()
                    });
                    last = Some((now, s.granted));
                    render(&s, rate, color)
                }
                Err(e) => format!("tcpb: {e:#}\n"),
            };
            if tty {
                write!(out, "\x1b[H\x1b[2J{frame}")?;
            } else {
                writeln!(out, "{frame}")?;
            }
            out.flush()?;
            let until = now + interval;
            while Instant::now() < until && !STOP.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    })();
    if tty {
        write!(out, "\x1b[?25h\x1b[?1049l")?;
        out.flush()?;
    }
    result
}

/// One frame.
pub(crate) fn render(s: &StatusSnapshot, rate: Option<f64>, color: bool) -> String {
    let mut f = String::new();
    let broker = s
        .broker
        .as_ref()
        .map_or("no broker running".to_string(), |b| {
            format!("broker pid {}, up {}s", b.pid, b.uptime_s)
        });
    let rate = rate.map_or("-".to_string(), |r| format!("{r:.1}/s"));
    let _ = writeln!(
        f,
        "tcpb  {broker}  farm {}  compiles {} ({rate})  running {}  queued {}",
        s.farm_origin, s.granted, s.running, s.queued
    );
    if let Some(t) = &s.team {
        let _ = writeln!(f, "team  {} at etcd: {}", shown(&t.farm), t.state);
    }
    write_hosts(&mut f, s, color);
    if s.queued > 0 {
        let _ = writeln!(f, "\nqueue: {} waiting", s.queued);
        for q in s.queue.iter().take(SHOWN) {
            let src = shown(q.source.as_deref().unwrap_or("(local job)"));
            let _ = writeln!(f, "  {:>3}  {:>6.1}s  {src}", q.position, q.waited_s);
        }
    }
    f
}

/// One bar per host, with the files compiling there.
fn write_hosts(f: &mut String, s: &StatusSnapshot, color: bool) {
    let w = s
        .hosts
        .iter()
        .map(|h| h.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for h in &s.hosts {
        let slots = h.slots.max(1) as usize;
        let busy = (h.busy as usize).min(slots);
        let bar_len = slots.min(32);
        let filled = (busy * bar_len).div_ceil(slots);
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(bar_len - filled));
        let learned = h
            .learned_speed
            .map_or(String::new(), |l| format!("  speed {l:.2}"));
        let _ = writeln!(
            f,
            "\n{:<w$}  [{bar}] {:>3}/{:<3} {}{learned}",
            shown(&h.name),
            h.busy,
            h.slots,
            state_cell(h.state, 9, color).trim_end()
        );
        if let Some(others) = others_on(s, &h.name) {
            let _ = writeln!(f, "    other brokers of the team: {others}");
        }
        let jobs: Vec<_> = s.compiling.iter().filter(|j| j.host == h.name).collect();
        for j in jobs.iter().take(SHOWN) {
            let src = shown(j.source.as_deref().unwrap_or("(local job)"));
            let _ = writeln!(f, "    {:>6.1}s  {src}", j.elapsed_s);
        }
        if jobs.len() > SHOWN {
            let _ = writeln!(f, "    … and {} more", jobs.len() - SHOWN);
        }
    }
}

/// The other brokers of the team holding slots of `host`, if any.
fn others_on(s: &StatusSnapshot, host: &str) -> Option<String> {
    let team = s.team.as_ref()?;
    let h = team.hosts.iter().find(|h| h.name == host)?;
    let others: Vec<String> = h
        .holders
        .iter()
        .filter(|(id, _)| *id != team.me)
        .map(|(id, n)| format!("{} {n}", shown(id)))
        .collect();
    (!others.is_empty()).then(|| others.join(", "))
}

#[cfg(test)]
mod tests {

    #[test]
    fn top_shows_the_other_brokers_on_each_host() {
        let host = crate::protocol::HostStatus::example("b\"1");
        let s = StatusSnapshot {
            team: Some(crate::protocol::TeamStatus::example()),
            hosts: vec![host],
            ..StatusSnapshot::default()
        };
        let frame = render(&s, None, false);
        assert!(frame.contains("team  lab at etcd: connected"), "{frame}");
        assert!(
            frame.contains("other brokers of the team: bob@ws2:9 3"),
            "{frame}"
        );
        assert!(!frame.contains("ann@ws1:7 1"), "{frame}");
    }

    use super::*;
    use crate::protocol::QueuedJob;

    #[test]
    fn escape_sequences_in_file_names_are_shown_not_obeyed() {
        let s = StatusSnapshot {
            queued: 1,
            queue: vec![QueuedJob {
                position: 1,
                pid: 7,
                source: Some("evil\x1b[2J\x07.c".into()),
                waited_s: 0.5,
            }],
            ..StatusSnapshot::default()
        };
        let frame = render(&s, None, false);
        assert!(
            !frame.contains('\x1b') && !frame.contains('\x07'),
            "{frame:?}"
        );
        assert!(frame.contains("evil\\u{1b}[2J\\u{7}.c"), "{frame}");
    }
}
