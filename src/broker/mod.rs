//! The broker daemon: one per user, started on first use. It owns the
//! control socket, the scheduler and the relay.

mod admin;
mod control;
pub mod costs;
pub mod eft;
pub mod health;
pub mod host;
pub mod http;
pub mod learn;
pub mod observe;
pub mod overlay;
pub mod peer;
pub mod pump;
pub mod queue;
pub mod relay;
pub mod sched;
mod state;
pub mod store;

use crate::config::Config;
use crate::paths::{Paths, ensure_private_dir};
use anyhow::{Context, Result, bail};
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use state::Shared;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `tcpb broker`: runs the broker in the foreground until it is stopped.
pub fn main(paths: &Paths) -> Result<()> {
    let config = Config::load(&paths.config_file)?;
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::farm::local_cpus().clamp(1, 4) as usize)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = bind(paths)?;
        run(listener, paths.clone(), config, signals()).await
    })
}

/// Each waiting or running compile holds a control connection and, when
/// remote, two relayed sockets: a `make -j200` outgrows the usual soft
/// limit of 1,024 descriptors. Raise it to the hard limit.
pub fn raise_open_file_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `l`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                tracing::debug!("cannot raise the open-file limit");
            }
        }
    }
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
pub fn bind(paths: &Paths) -> Result<interprocess::local_socket::tokio::Listener> {
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
    set_mode(&socket, 0o600)?;
    Ok(listener)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// distcc never deletes its per-port lock files: remove those of relay
/// ports from earlier brokers, so the private directory stays bounded.
fn prune_distcc_locks(distcc_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(distcc_dir.join("lock")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("cpu_tcp_127.0.0.1_") || name.starts_with("backoff_tcp_127.0.0.1_") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Serves `listener` until `shutdown` completes or the broker is asked to
/// stop (`tcpb stop`, idle time), then lets live leases finish for a
/// bounded time.
pub async fn run(
    listener: interprocess::local_socket::tokio::Listener,
    paths: Paths,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let distcc_dir = paths.distcc_dir();
    ensure_private_dir(&distcc_dir)?;
    prune_distcc_locks(&distcc_dir);
    let grace = Duration::from_secs(config.broker.shutdown_grace_s);
    let http_addr = config.http.listen;
    let (saved, warning) = store::load(&store::path(&paths.state_dir));
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let socket = paths.socket();
    let shared = Shared::new(config, paths, saved, Instant::now());
    tracing::info!(
        pid = std::process::id(),
        version = env!("CARGO_PKG_VERSION"),
        socket = %socket.display(),
        "broker started"
    );
    let ticker = tokio::spawn(tick(Arc::clone(&shared)));
    // Changes to [http] take effect when the broker restarts.
    let http = http_addr.map(|addr| tokio::spawn(http::serve(Arc::clone(&shared), addr)));
    let hup = tokio::spawn(reload_on_sighup(Arc::clone(&shared)));
    let mut stop = shared.shutdown.subscribe();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok(conn) => {
                    tokio::spawn(control::serve(Arc::clone(&shared), conn));
                }
                Err(e) => {
                    tracing::warn!("control accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = &mut shutdown => break,
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Dropping the listener removes the socket, so a new broker can start
    // while this one finishes.
    drop(listener);
    shared.stop();
    shared.turn_away_waiters();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && shared.lock().sched.running() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ticker.abort();
    hup.abort();
    if let Some(h) = http {
        h.abort();
    }
    let mut inner = shared.lock();
    shared.save(&mut inner);
    tracing::info!(running = inner.sched.running(), "broker stopped");
    Ok(())
}

/// Periodic work: probes that are due, queue, saving, idle exit.
async fn tick(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_log_check = Instant::now();
    loop {
        every.tick().await;
        let now = Instant::now();
        let (due, timeout) = {
            let mut inner = shared.lock();
            let t = Duration::from_millis(inner.config.health.timeout_ms);
            (inner.sched.due_probes(now), t)
        };
        for (name, host, port) in due {
            tokio::spawn(probe(Arc::clone(&shared), name, host, port, timeout));
        }
        shared.tick(now);
        if now.duration_since(last_log_check) >= Duration::from_secs(1) {
            last_log_check = now;
            let max = shared.lock().config.broker.log_max_kib.max(1) << 10;
            rotate_log(&shared.paths, max);
        }
    }
}

/// When the log this broker writes to (its stdout and stderr) is over
/// `max` bytes, sets it aside as `broker.log.old` and writes a new one.
fn rotate_log(paths: &Paths, max: u64) {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    let log = paths.log_file();
    let Ok(meta) = std::fs::metadata(&log) else {
        return;
    };
    // Only the file our stderr is (a foreground broker writes elsewhere).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only into `st`.
    let ours = unsafe { libc::fstat(2, &mut st) } == 0
        && st.st_ino == meta.ino()
        && st.st_dev == meta.dev();
    if !ours || meta.len() <= max {
        return;
    }
    if std::fs::rename(&log, paths.old_log_file()).is_err() {
        return;
    }
    let Ok(new) = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log)
    else {
        return;
    };
    // SAFETY: dup2 onto our own stdout and stderr; `new` stays open until
    // then and its descriptor is closed after.
    unsafe {
        libc::dup2(new.as_raw_fd(), 1);
        libc::dup2(new.as_raw_fd(), 2);
    }
    tracing::info!(
        "log set aside as {} past {max} bytes",
        paths.old_log_file().display()
    );
}

/// One probe: a TCP connect with a timeout, then close.
async fn probe(shared: Arc<Shared>, name: String, host: String, port: u16, timeout: Duration) {
    let result = tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await;
    let error = match result {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("connect failed: {e}")),
        Err(_) => Some(format!(
            "connect timed out after {} ms",
            timeout.as_millis()
        )),
    };
    shared.probe_done(&name, error);
}

async fn reload_on_sighup(shared: Arc<Shared>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        if let Err(e) = shared.reload() {
            tracing::error!("reload on SIGHUP failed, keeping the old config: {e}");
        }
    }
}
