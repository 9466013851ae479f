//! The compiler wrapper: what runs for every compile. Plain synchronous
//! code; it asks the broker for a slot and then runs distcc or the real
//! compiler.

pub(crate) mod compiler;
pub(crate) mod connect;
mod run;

use crate::classify::{Route, classify};
use crate::frame;
use crate::hosts::{self, HostList};
use crate::paths::Paths;
use crate::protocol::{ClientMsg, Grant, LeaseRequest, PROTOCOL_VERSION, Request, Response};
use compiler::Resolved;
use interprocess::local_socket::Stream;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Set in the environment of the compilers tcpb runs, to catch loops.
pub(crate) const WRAPPED_VAR: &str = "TCPB_WRAPPED";

/// Runs one compile: `compiler` with `args`.
pub(crate) fn compile(compiler: &OsStr, args: Vec<OsString>) -> ExitCode {
    if std::env::var_os(WRAPPED_VAR).is_some() {
        eprintln!(
            "tcpb: \"{}\" led back to tcpb from a compile tcpb started ({WRAPPED_VAR} is set); \
             check that PATH and CC do not make the real compiler point at tcpb",
            compiler.to_string_lossy()
        );
        return ExitCode::from(1);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let me = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .unwrap_or_default();
    let path_var = std::env::var_os("PATH");
    let resolved = match compiler::resolve(compiler, path_var.as_deref(), &cwd, &me) {
        Ok(r) => r,
        Err(e) => {
            match crate::cli::near_subcommand(&compiler.to_string_lossy()) {
                Some(sub) => eprintln!("tcpb: {e}; did you mean `tcpb {sub}`?"),
                None => eprintln!("tcpb: {e}"),
            }
            return ExitCode::from(127);
        }
    };
    let farm = match hosts::load(|k| std::env::var_os(k)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tcpb: {e}; compiling locally");
            return run_local(&resolved, &args);
        }
    };
    let (route, distcc) = route(&args, path_var.as_deref(), &cwd);
    let paths = Paths::from_env();
    let req = lease_request(&route, &cwd, compiler, farm);
    let (grant, lease) = match lease(&paths, &req) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("tcpb: {e}; compiling locally");
            return run_local(&resolved, &args);
        }
    };
    match (grant, distcc) {
        (Grant::Remote { port, options, .. }, Some(distcc)) => {
            let relay = (port, relay_hosts(port, &options, &req.farm));
            let cmd = distcc_command(
                &paths,
                &distcc,
                &resolved,
                &args,
                relay,
                path_var.as_deref(),
            );
            run::exec(cmd, &distcc.to_string_lossy(), &lease)
        }
        _ => run_local(&resolved, &args),
    }
}

/// Where the compile of `args` may go, and distcc when it may go to the
/// farm (without distcc it runs locally, saying why).
fn route(args: &[OsString], path_var: Option<&OsStr>, cwd: &Path) -> (Route, Option<PathBuf>) {
    let utf8: Option<Vec<String>> = args.iter().map(|a| a.to_str().map(String::from)).collect();
    let route = match &utf8 {
        Some(a) => classify(a),
        None => Route::Local {
            reason: "an argument is not UTF-8".into(),
        },
    };
    match find_distcc(path_var, cwd) {
        Ok(d) => (route, Some(d)),
        Err(e) if matches!(route, Route::Farm { .. }) => {
            eprintln!("tcpb: {e}; compiling locally");
            let reason = "no distcc".into();
            (Route::Local { reason }, None)
        }
        Err(_) => (route, None),
    }
}

/// Why distcc cannot be run.
#[derive(Debug, thiserror::Error)]
enum DistccError {
    #[error("TCPB_DISTCC={0} is not a file")]
    NotAFile(String),
    #[error("distcc not found on PATH (install distcc, or set TCPB_DISTCC)")]
    NotOnPath,
}

/// distcc: `$TCPB_DISTCC`, else the first on PATH.
fn find_distcc(path_var: Option<&OsStr>, cwd: &Path) -> Result<PathBuf, DistccError> {
    match std::env::var_os("TCPB_DISTCC") {
        Some(p) if Path::new(&p).is_file() => Ok(PathBuf::from(p)),
        Some(p) => Err(DistccError::NotAFile(p.to_string_lossy().into_owned())),
        None => which::which_in("distcc", path_var, cwd).map_err(|_| DistccError::NotOnPath),
    }
}

fn lease_request(route: &Route, cwd: &Path, compiler: &OsStr, farm: HostList) -> LeaseRequest {
    let source = match route {
        Route::Farm { source } => Some(source.clone()),
        Route::Local { .. } => None,
    };
    let source_path = source
        .as_ref()
        .and_then(|s| std::fs::canonicalize(cwd.join(s)).ok());
    let source_size = source_path
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    LeaseRequest {
        pid: std::process::id(),
        cwd: cwd.to_string_lossy().into_owned(),
        compiler: compiler.to_string_lossy().into_owned(),
        local_only: source.is_none(),
        source,
        source_size,
        source_path: source_path.map(|p| p.to_string_lossy().into_owned()),
        // SAFETY: getpgrp has no preconditions and cannot fail.
        build: unsafe { libc::getpgrp() } as u32,
        ssh_env: ssh_env(&farm, std::env::vars_os()),
        io_timeout_s: std::env::var("DISTCC_IO_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|s| *s > 0),
        farm,
    }
}

/// The variables ssh needs from the compile's environment (`DISTCC_SSH`,
/// `SSH_AUTH_SOCK` and the other `SSH_*`) when `farm` names an ssh host.
fn ssh_env(
    farm: &HostList,
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(String, String)> {
    use crate::hosts::HostEntry;
    if !farm
        .entries
        .iter()
        .any(|e| matches!(e, HostEntry::Ssh { .. }))
    {
        return Vec::new();
    }
    vars.filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k == "DISTCC_SSH" || k.starts_with("SSH_"))
        .collect()
}

/// Why a lease could not be had.
#[derive(Debug, thiserror::Error)]
enum LeaseError {
    #[error("cannot reach the broker: {0}")]
    Connect(std::io::Error),
    #[error("lost the broker: {0}")]
    Frame(#[from] frame::FrameError),
    #[error("the broker closed the connection")]
    Closed,
    #[error("broker: {0}")]
    Broker(String),
    #[error("broker (pid {pid}) speaks protocol {theirs}, this tcpb {PROTOCOL_VERSION}")]
    Version { pid: u32, theirs: u32 },
    #[error(
        "the broker at {socket} speaks protocol {theirs} and cannot be stopped (pid {pid}: {why}); stop it by hand"
    )]
    Unstoppable {
        socket: String,
        theirs: u32,
        pid: u32,
        why: std::io::Error,
    },
}

/// Takes a lease; the returned stream holds it until dropped.
fn lease(paths: &Paths, req: &LeaseRequest) -> Result<(Grant, Stream), LeaseError> {
    let mut restarted = false;
    loop {
        match lease_once(paths, req) {
            // A broker of another version: stop it and start ours, once.
            Err(LeaseError::Version { pid, theirs }) if !restarted => {
                eprintln!(
                    "tcpb: broker pid {pid} speaks protocol {theirs}, this tcpb {PROTOCOL_VERSION}; restarting it"
                );
                if let Err(why) = connect::terminate(pid) {
                    return Err(LeaseError::Unstoppable {
                        socket: paths.socket().display().to_string(),
                        theirs,
                        pid,
                        why,
                    });
                }
                // A new broker must read the state the old one saves last.
                let _ = connect::wait_exit(paths, pid, || {});
                restarted = true;
            }
            // The broker went away before granting (stopping, crashed): once more.
            Err(LeaseError::Closed | LeaseError::Frame(_)) if !restarted => restarted = true,
            other => return other,
        }
    }
}

fn lease_once(paths: &Paths, req: &LeaseRequest) -> Result<(Grant, Stream), LeaseError> {
    let mut started = false;
    let mut conn = connect::connect_or_start(paths, &mut started).map_err(LeaseError::Connect)?;
    let msg = ClientMsg {
        v: PROTOCOL_VERSION,
        req: Request::Lease(req.clone()),
    };
    frame::write_sync(&mut conn, &msg).map_err(|e| LeaseError::Frame(e.into()))?;
    loop {
        let payload = frame::read_sync(&mut conn)?.ok_or(LeaseError::Closed)?;
        let msg = match connect::answer(&payload)? {
            connect::Answer::Msg(msg) => msg,
            connect::Answer::OtherVersion { v, pid } => {
                return Err(LeaseError::Version { pid, theirs: v });
            }
        };
        match msg.resp {
            Response::Queued { .. } => continue,
            Response::Notice { message } => eprintln!("tcpb: {message}"),
            Response::Granted(g) => return Ok((g, conn)),
            Response::Error { message } => return Err(LeaseError::Broker(message)),
            other => return Err(LeaseError::Broker(format!("unexpected answer {other:?}"))),
        }
    }
}

fn run_local(resolved: &Resolved, args: &[OsString]) -> ExitCode {
    let mut cmd = Command::new(&resolved.path);
    cmd.args(args).env(WRAPPED_VAR, "1");
    run::run(cmd, &resolved.path.to_string_lossy())
}

/// The host list distcc gets: the relay port with the host's options
/// (`,lzo`, `,cpp`), and the user's own limits on this machine's work
/// (`--localslots`, and `--localslots_cpp` for pump mode's preprocessing),
/// which distcc enforces through the lock files of its `DISTCC_DIR`.
fn relay_hosts(port: u16, options: &str, list: &HostList) -> String {
    let mut hosts = String::new();
    if let Some(n) = list.localslots {
        hosts.push_str(&format!("--localslots={n} "));
    }
    if let Some(n) = list.localslots_cpp {
        hosts.push_str(&format!("--localslots_cpp={n} "));
    }
    hosts.push_str(&format!("127.0.0.1:{port}/1{options}"));
    hosts
}

/// distcc's command for a compile through relay port `port`, whose
/// `DISTCC_HOSTS` is `hosts`.
fn distcc_command(
    paths: &Paths,
    distcc: &Path,
    resolved: &Resolved,
    args: &[OsString],
    (port, hosts): (u16, String),
    path_var: Option<&OsStr>,
) -> Command {
    let dir = paths.distcc_dir();
    let lock_dir = dir.join("lock");
    if let Err(e) = std::fs::create_dir_all(&lock_dir) {
        eprintln!("tcpb: cannot create {}: {e}", lock_dir.display());
    }
    // A backoff file left by an earlier failure would make distcc skip this
    // port for 60 s: it is a new lease now.
    let _ = std::fs::remove_file(lock_dir.join(format!("backoff_tcp_127.0.0.1_{port}_0")));
    let mut cmd = Command::new(distcc);
    cmd.arg(&resolved.distcc_name)
        .args(args)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_DIR", &dir)
        // distcc 3.4 retries a refusing host forever with a period of 0.
        .env_remove("DISTCC_BACKOFF_PERIOD")
        .env(WRAPPED_VAR, "1");
    if let Some(p) = compiler::clean_path(path_var, &resolved.skipped_dirs) {
        cmd.env("PATH", p);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_environment_is_sent_only_for_lists_with_ssh_hosts() {
        let vars = || {
            [
                ("SSH_AUTH_SOCK", "/run/agent"),
                ("DISTCC_SSH", "ssh -F cfg"),
                ("HOME", "/home/me"),
                ("DISTCC_HOSTS", "x"),
            ]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
        };
        let tcp = crate::hosts::parse("h1 h2", "DISTCC_HOSTS").unwrap();
        assert!(ssh_env(&tcp, vars()).is_empty());
        let ssh = crate::hosts::parse("h1 me@h2", "DISTCC_HOSTS").unwrap();
        let got = ssh_env(&ssh, vars());
        let want = [
            ("SSH_AUTH_SOCK", "/run/agent"),
            ("DISTCC_SSH", "ssh -F cfg"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }
}
