//! The broker daemon: one per user, started on first use. `run` serves the
//! control socket until it is told to stop; `state::Broker` owns everything
//! the tasks share; `sched` decides (pure, no I/O); `relay` moves the bytes
//! and reports what happened; `store` writes the files on a thread of its
//! own.

mod control;
mod http;
mod http_team;
mod overlay;
pub mod relay;
pub mod sched;
mod slots;
mod state;
mod store;
pub mod team;

use crate::config::Config;
use crate::paths::{Paths, ensure_private_dir};
use anyhow::{Context, Result, bail};
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use relay::Relay;
use state::Broker;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `tcpb broker`: runs the broker in the foreground until it is stopped.
pub(crate) fn main(paths: &Paths) -> Result<()> {
    let config = Config::load(&paths.config_file)?;
    crate::sys::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::farm::local_cpus().clamp(1, 4) as usize)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Files are read and the socket made before the runtime serves: no
    // async worker waits for the disk.
    let loaded = load(paths);
    let listener = {
        let _in_runtime = runtime.enter();
        bind(paths)?
    };
    runtime.block_on(run(listener, paths.clone(), config, loaded, signals()))
}

/// What the last broker saved, read before the runtime starts (a file
/// that cannot be used is set aside, and the log says so).
fn load(paths: &Paths) -> (store::Saved, sched::costs::SavedCosts) {
    let (saved, costs, warnings) = store::load_all(&paths.state_dir);
    for w in warnings {
        tracing::warn!("{w}");
    }
    (saved, costs)
}

/// The farm as the last broker left it, for `tcpb status` with no broker
/// running.
pub(crate) fn offline_status(
    paths: &Paths,
    list: crate::hosts::HostList,
    config: Config,
) -> crate::protocol::StatusSnapshot {
    let (saved, _) = store::load(&store::path(&paths.state_dir));
    Broker::offline_status(list, config, saved)
}

/// Completes on SIGTERM or SIGINT.
async fn signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

/// Binds the control socket. A socket that answers belongs to a live
/// broker and is left alone; a stale one is replaced.
pub(crate) fn bind(paths: &Paths) -> Result<interprocess::local_socket::tokio::Listener> {
    ensure_private_dir(&paths.runtime_dir)
        .with_context(|| format!("runtime directory {}", paths.runtime_dir.display()))?;
    let socket = paths.socket();
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            bail!("a broker is already listening on {}", socket.display());
        }
        std::fs::remove_file(&socket)
            .with_context(|| format!("cannot remove stale socket {}", socket.display()))?;
    }
    let name = socket.as_path().to_fs_name::<GenericFilePath>()?;
    let listener = ListenerOptions::new()
        .name(name)
        .create_tokio()
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod {}", socket.display()))?;
    Ok(listener)
}

/// distcc never deletes its per-port lock files: remove those of relay
/// ports from earlier brokers, so the private directory stays bounded.
fn prune_distcc_locks(distcc_dir: &Path) -> std::io::Result<()> {
    ensure_private_dir(distcc_dir)?;
    let Ok(entries) = std::fs::read_dir(distcc_dir.join("lock")) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("cpu_tcp_127.0.0.1_") || name.starts_with("backoff_tcp_127.0.0.1_") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// Serves `listener` until `shutdown` completes or the broker is asked to
/// stop (`tcpb stop`, idle time), then lets live leases finish for a
/// bounded time and saves its state.
async fn run(
    listener: interprocess::local_socket::tokio::Listener,
    paths: Paths,
    config: Config,
    loaded: (store::Saved, sched::costs::SavedCosts),
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let (distcc_dir, ssh_dir) = (paths.distcc_dir(), paths.ssh_dir());
    let dir = ssh_dir.clone();
    tokio::task::spawn_blocking(move || {
        prune_distcc_locks(&distcc_dir)?;
        ensure_private_dir(&dir)
    })
    .await??;
    let grace = Duration::from_secs(config.broker.shutdown_grace_s);
    let http_addr = config.http.listen;
    let socket = paths.socket();
    let (relay, reports) = Relay::new(ssh_dir);
    let (team, slots) = join_team(&config);
    let broker = Broker::new(config, paths, loaded, relay.clone(), slots);
    tracing::info!(
        pid = std::process::id(),
        version = env!("CARGO_PKG_VERSION"),
        socket = %socket.display(),
        "broker started"
    );
    let mut tasks = vec![
        tokio::spawn(tick(broker.clone(), relay.clone())),
        tokio::spawn(reload_on_sighup(broker.clone())),
        tokio::spawn(relay_reports(broker.clone(), reports)),
    ];
    if let Some(t) = &team {
        tasks.push(tokio::spawn(team::task::run(t.clone(), broker.clone())));
    }
    // Changes to [http] take effect when the broker restarts.
    let http = http_addr.map(|addr| tokio::spawn(http::serve(broker.clone(), addr)));
    serve(&listener, &broker, shutdown).await;
    // Dropping the listener removes the socket, so a new broker can start
    // while this one finishes.
    drop(listener);
    broker.stop();
    broker.turn_away_waiters();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && broker.running() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks.iter().chain(&http) {
        t.abort();
    }
    if let Some(t) = &team {
        t.end().await;
    }
    // The writer logs a save that failed.
    let _ = broker.save().await;
    tracing::info!(running = broker.running(), "broker stopped");
    Ok(())
}

/// Team mode's membership, when `[team]` is configured (its values were
/// checked when the config was read), and the slot source that goes with
/// it. Changes to `[team]` take effect when the broker restarts.
fn join_team(config: &Config) -> (Option<Arc<team::driver::Team>>, Box<dyn slots::Slots>) {
    let Some(t) = config.team.as_ref() else {
        return (None, Box::new(slots::AllSlots));
    };
    let timeout = Duration::from_millis(config.broker.connect_timeout_ms);
    match team::driver::Team::new(t, timeout) {
        Ok(team) => {
            let (farm, at) = (&t.farm, t.endpoints.join(", "));
            tracing::info!("team: farm {farm} at {at} as {}", team.me());
            let slots = Box::new(team::slots::TeamSlots(team.clone()));
            (Some(team), slots)
        }
        Err(e) => {
            tracing::error!("team: {e}; this broker uses the farm alone");
            (None, Box::new(slots::AllSlots))
        }
    }
}

/// Accepts control connections until told to stop.
async fn serve(
    listener: &interprocess::local_socket::tokio::Listener,
    broker: &Broker,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok(conn) => {
                    tokio::spawn(control::serve(broker.clone(), conn));
                }
                Err(e) => {
                    tracing::warn!("control accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = &mut shutdown => return,
            _ = broker.stopping() => return,
        }
    }
}

/// Periodic work: probes that are due, saving, log size, idle exit.
async fn tick(broker: Broker, relay: Relay) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_log_check = Instant::now();
    let mut cpu = LocalCpu::default();
    loop {
        every.tick().await;
        let now = Instant::now();
        broker.refresh_capacity();
        if broker.options().local_overflow {
            cpu.sample(&broker, now).await;
        }
        let (due, timeout) = broker.due_probes(now);
        for target in due {
            let (broker, relay) = (broker.clone(), relay.clone());
            tokio::spawn(async move {
                let error = relay.probe(&target, timeout).await;
                broker.probe_done(&target.name, error);
            });
        }
        let check_log = now.duration_since(last_log_check) >= Duration::from_secs(1);
        if check_log {
            last_log_check = now;
        }
        broker.tick(now, check_log);
    }
}

/// Samples this machine's idle CPUs for local overflow.
#[derive(Default)]
struct LocalCpu {
    /// The last sample: when, and the kernel's (idle, total) CPU ticks.
    last: Option<(Instant, (u64, u64))>,
}

/// How often idle CPUs are sampled.
const CPU_SAMPLE: Duration = Duration::from_millis(500);

impl LocalCpu {
    /// Reads the counters (on a blocking thread) when a sample is due and
    /// tells the broker how many CPUs were idle since the last one.
    async fn sample(&mut self, broker: &Broker, now: Instant) {
        if self
            .last
            .is_some_and(|(at, _)| now.duration_since(at) < CPU_SAMPLE)
        {
            return;
        }
        let Ok(Ok(times)) = tokio::task::spawn_blocking(crate::sys::cpu_times).await else {
            return;
        };
        if let Some((_, (idle0, total0))) = self.last {
            let total = times.1.saturating_sub(total0);
            if total > 0 {
                let idle = times.0.saturating_sub(idle0) as f64 / total as f64;
                broker.local_idle(idle * f64::from(crate::farm::local_cpus()));
            }
        }
        self.last = Some((now, times));
    }
}

/// Hands the relay's reports to the broker's state.
async fn relay_reports(
    broker: Broker,
    mut reports: tokio::sync::mpsc::UnboundedReceiver<relay::Report>,
) {
    while let Some(r) = reports.recv().await {
        broker.on_report(r);
    }
}

/// Re-reads `config.toml` (on a blocking thread) and applies it. On error
/// the old config stays.
async fn reload(broker: &Broker) -> Result<String, crate::config::ConfigError> {
    let file = broker.paths().config_file.clone();
    let path = file.display().to_string();
    let read = tokio::task::spawn_blocking(move || Config::load(&file)).await;
    let config = read.unwrap_or_else(|e| {
        let source = std::io::Error::other(e);
        Err(crate::config::ConfigError::Read { path, source })
    })?;
    let message = broker.reconfigure(config);
    tracing::info!("{message}");
    Ok(message)
}

async fn reload_on_sighup(broker: Broker) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        if let Err(e) = reload(&broker).await {
            tracing::error!("reload on SIGHUP failed, keeping the old config: {e}");
        }
    }
}
