//! `tcpb status` and `tcpb stop`: they talk to a running broker and never
//! start one.

use crate::client::connect;
use crate::config::Config;
use crate::farm;
use crate::paths::Paths;
use crate::protocol::{HostState, HostStatus, Request, Response, StatusSnapshot};
use anyhow::{Result, bail};
use std::io::Write;

/// The farm this user's compiles would use, without a broker.
fn configured(paths: &Paths) -> Result<StatusSnapshot> {
    let list = crate::hosts::load(|k| std::env::var_os(k))?;
    let config = Config::load(&paths.config_file)?;
    let mut farm = farm::build(&list, &config, farm::local_cpus());
    let (saved, _) = crate::broker::store::load(&crate::broker::store::path(&paths.state_dir));
    saved.overlay.apply(&mut farm);
    let hosts = farm
        .hosts
        .iter()
        .map(|h| HostStatus {
            name: h.name.clone(),
            state: match h.admin {
                crate::farm::Admin::Active => HostState::Up,
                crate::farm::Admin::Drain => HostState::Draining,
                crate::farm::Admin::Disabled => HostState::Disabled,
            },
            slots: h.slots,
            busy: 0,
            speed: h.speed,
            learned_speed: None,
            samples: 0,
            jobs: 0,
            failures: 0,
            fallbacks: 0,
            last_error: None,
            last_error_age_s: None,
            local_only: false,
        })
        .collect();
    Ok(StatusSnapshot {
        broker: None,
        farm_origin: farm.origin,
        queued: 0,
        running: 0,
        granted: 0,
        queue_timeouts: 0,
        fell_back: 0,
        over_limit: 0,
        unparsed_streams: 0,
        queue: Vec::new(),
        hosts,
    })
}

/// `tcpb status [--json]`.
pub fn status(paths: &Paths, json: bool) -> Result<()> {
    let snap = match connect::call(paths, Request::Status, false)? {
        Some(Response::Status(s)) => *s,
        Some(Response::Error { message }) => bail!("broker: {message}"),
        Some(other) => bail!("unexpected answer from the broker: {other:?}"),
        None => configured(paths)?,
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &snap)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &snap, paths)?;
    }
    Ok(())
}

fn duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn write_table(out: &mut impl Write, s: &StatusSnapshot, paths: &Paths) -> std::io::Result<()> {
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
    writeln!(
        out,
        "jobs    {} running, {} waiting, {} granted, {} fell back to local, {} queue timeouts, {} over limits\n",
        s.running, s.queued, s.granted, s.fell_back, s.queue_timeouts, s.over_limit
    )?;
    let names: Vec<String> = s
        .hosts
        .iter()
        .map(|h| {
            if h.local_only {
                format!("{} (local jobs)", h.name)
            } else {
                h.name.clone()
            }
        })
        .collect();
    let w = names.iter().map(String::len).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:<w$}  {:<9}  {:>7}  {:>5}  {:>7}  {:>6}  {:>5}  {:>5}  LAST ERROR",
        "HOST", "STATE", "SLOTS", "SPEED", "LEARNED", "JOBS", "FAILS", "LOCAL"
    )?;
    for (h, name) in s.hosts.iter().zip(&names) {
        let state = format!("{:?}", h.state).to_lowercase();
        let err = match (&h.last_error, h.last_error_age_s) {
            (Some(e), Some(age)) => format!("{e} ({} ago)", duration(age)),
            (Some(e), None) => e.clone(),
            _ => "-".to_string(),
        };
        writeln!(
            out,
            "{name:<w$}  {state:<9}  {:>7}  {:>5.1}  {:>7}  {:>6}  {:>5}  {:>5}  {err}",
            format!("{}/{}", h.busy, h.slots),
            h.speed,
            h.learned_speed
                .map_or("-".to_string(), |s| format!("{s:.2}")),
            h.jobs,
            h.failures,
            h.fallbacks
        )?;
    }
    if !s.queue.is_empty() {
        writeln!(out, "\nQUEUE  WAITED  PID      SOURCE")?;
        for q in &s.queue {
            let src = q.source.as_deref().unwrap_or("(local job)");
            writeln!(
                out,
                "{:>5}  {:>5.1}s  {:<7}  {src}",
                q.position, q.waited_s, q.pid
            )?;
        }
        if s.queued as usize > s.queue.len() {
            writeln!(out, "  … and {} more", s.queued as usize - s.queue.len())?;
        }
    }
    Ok(())
}

/// `tcpb stop`.
pub fn stop(paths: &Paths) -> Result<()> {
    match connect::call(paths, Request::Stop, false)? {
        None => {
            println!("tcpb: no broker running");
            return Ok(());
        }
        Some(Response::Stopping) => (),
        Some(other) => bail!("unexpected answer from the broker: {other:?}"),
    };
    // The socket goes as soon as the broker stops accepting.
    for _ in 0..500 {
        if connect::connect(paths).is_err() {
            println!("tcpb: broker stopped");
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    bail!("the broker did not stop within 5s")
}
