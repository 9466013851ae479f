//! Where tcpb keeps things. Every path can be overridden from the
//! environment so tests run side by side without touching `$HOME`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The files and directories one user's tcpb works with.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Per-user 0700 directory holding the control socket and start lock.
    pub runtime_dir: PathBuf,
    /// Directory for the broker log and persisted state.
    pub state_dir: PathBuf,
    /// The optional `config.toml`.
    pub config_file: PathBuf,
    /// Where `tcpb masquerade install` puts links named like compilers.
    pub masquerade_dir: PathBuf,
}

impl Paths {
    /// Resolves every path from the process environment.
    pub fn from_env() -> Paths {
        Paths::from_lookup(|k| std::env::var_os(k))
    }

    /// Resolves every path through `get`, which stands for the environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Paths {
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = nonempty("HOME").unwrap_or_else(|| PathBuf::from("/"));
        let runtime_dir = nonempty("TCPB_RUNTIME_DIR").unwrap_or_else(|| {
            match nonempty("XDG_RUNTIME_DIR") {
                Some(xdg) => xdg.join("tcpb"),
                // SAFETY: getuid has no preconditions and cannot fail.
                None => std::env::temp_dir().join(format!("tcpb-{}", unsafe { libc::getuid() })),
            }
        });
        let state_dir = nonempty("TCPB_STATE_DIR").unwrap_or_else(|| {
            nonempty("XDG_STATE_HOME")
                .unwrap_or_else(|| home.join(".local/state"))
                .join("tcpb")
        });
        let config_file = nonempty("TCPB_CONFIG").unwrap_or_else(|| {
            nonempty("XDG_CONFIG_HOME")
                .unwrap_or_else(|| home.join(".config"))
                .join("tcpb/config.toml")
        });
        let masquerade_dir = nonempty("TCPB_MASQUERADE_DIR").unwrap_or_else(|| {
            nonempty("XDG_DATA_HOME")
                .unwrap_or_else(|| home.join(".local/share"))
                .join("tcpb/masquerade")
        });
        Paths {
            runtime_dir,
            state_dir,
            config_file,
            masquerade_dir,
        }
    }

    /// The broker's control socket.
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join("broker.sock")
    }

    /// The lock that serialises broker start-up.
    pub fn start_lock(&self) -> PathBuf {
        self.runtime_dir.join("start.lock")
    }

    /// The private `DISTCC_DIR` given to every distcc that tcpb runs.
    pub fn distcc_dir(&self) -> PathBuf {
        self.runtime_dir.join("distcc")
    }

    /// The broker's log file.
    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("broker.log")
    }

    /// Where a full log is set aside.
    pub fn old_log_file(&self) -> PathBuf {
        self.state_dir.join("broker.log.old")
    }
}

/// This process's effective uid: whose compiles the broker serves.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `dir` (and parents) and makes sure it is private to this user:
/// owned by us, writable by no one else (an open one is refused: another
/// user could replace the socket), and mode 0700.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::metadata(dir)?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, not by this user (uid {uid})",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        // Another user could replace the socket or the lock file.
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by other users (mode {:o}); run: chmod 700 {}",
                dir.display(),
                meta.mode() & 0o777,
                dir.display()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn xdg_locations() {
        let p = Paths::from_lookup(env(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/run/user/7")]));
        assert_eq!(p.socket(), PathBuf::from("/run/user/7/tcpb/broker.sock"));
        assert_eq!(
            p.log_file(),
            PathBuf::from("/h/.local/state/tcpb/broker.log")
        );
        assert_eq!(p.config_file, PathBuf::from("/h/.config/tcpb/config.toml"));
    }

    #[test]
    fn overrides_win() {
        let p = Paths::from_lookup(env(&[
            ("HOME", "/h"),
            ("XDG_RUNTIME_DIR", "/run/user/7"),
            ("TCPB_RUNTIME_DIR", "/r"),
            ("TCPB_STATE_DIR", "/s"),
            ("TCPB_CONFIG", "/c.toml"),
        ]));
        assert_eq!(p.runtime_dir, PathBuf::from("/r"));
        assert_eq!(p.state_dir, PathBuf::from("/s"));
        assert_eq!(p.config_file, PathBuf::from("/c.toml"));
    }

    #[test]
    fn no_runtime_dir_falls_back_to_tmp() {
        let p = Paths::from_lookup(env(&[("HOME", "/h")]));
        assert!(p.runtime_dir.starts_with(std::env::temp_dir()));
        assert!(p.runtime_dir.to_string_lossy().contains("tcpb-"));
    }
}
