//! Where tcpb keeps things. Every path can be overridden from the
//! environment so tests run side by side without touching `$HOME`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The files and directories one user's tcpb works with.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    /// Per-user 0700 directory holding the control socket and start lock.
    pub runtime_dir: PathBuf,
    /// Directory for the broker log and persisted state.
    pub state_dir: PathBuf,
    /// The optional `config.toml`.
    pub config_file: PathBuf,
    /// Where `tcpb masquerade install` puts links named like compilers.
    pub masquerade_dir: PathBuf,
}

/// The base directories the XDG rules give (from the `directories` crate),
/// before tcpb's own overrides.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bases {
    /// `$XDG_RUNTIME_DIR`, if set.
    pub runtime: Option<PathBuf>,
    /// `$XDG_STATE_HOME`, else `~/.local/state`.
    pub state: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub config: Option<PathBuf>,
    /// `$XDG_DATA_HOME`, else `~/.local/share`.
    pub data: Option<PathBuf>,
}

impl Bases {
    /// The base directories of this process's environment.
    fn from_env() -> Bases {
        let Some(b) = directories::BaseDirs::new() else {
            return Bases::default();
        };
        Bases {
            runtime: b.runtime_dir().map(Path::to_path_buf),
            state: b.state_dir().map(Path::to_path_buf),
            config: Some(b.config_dir().to_path_buf()),
            data: Some(b.data_dir().to_path_buf()),
        }
    }
}

impl Paths {
    /// Resolves every path from the process environment.
    pub(crate) fn from_env() -> Paths {
        Paths::resolve(|k| std::env::var_os(k), Bases::from_env())
    }

    /// Resolves every path: a `TCPB_*` override read through `get` (which
    /// stands for the environment) wins over the base directory; without
    /// a runtime directory, `/tmp/tcpb-UID`; without a home, `/`.
    pub(crate) fn resolve(get: impl Fn(&str) -> Option<OsString>, bases: Bases) -> Paths {
        let over = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = Path::new("/");
        let runtime_dir = over("TCPB_RUNTIME_DIR").unwrap_or_else(|| match bases.runtime {
            Some(xdg) => xdg.join("tcpb"),
            None => std::env::temp_dir().join(format!("tcpb-{}", crate::sys::euid())),
        });
        let state_dir = over("TCPB_STATE_DIR").unwrap_or_else(|| {
            bases
                .state
                .unwrap_or_else(|| root.join(".local/state"))
                .join("tcpb")
        });
        let config_file = over("TCPB_CONFIG").unwrap_or_else(|| {
            bases
                .config
                .unwrap_or_else(|| root.join(".config"))
                .join("tcpb/config.toml")
        });
        let masquerade_dir = over("TCPB_MASQUERADE_DIR").unwrap_or_else(|| {
            bases
                .data
                .unwrap_or_else(|| root.join(".local/share"))
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
    pub(crate) fn socket(&self) -> PathBuf {
        self.runtime_dir.join("broker.sock")
    }

    /// The lock that serialises broker start-up.
    pub(crate) fn start_lock(&self) -> PathBuf {
        self.runtime_dir.join("start.lock")
    }

    /// The private `DISTCC_DIR` given to every distcc that tcpb runs.
    pub(crate) fn distcc_dir(&self) -> PathBuf {
        self.runtime_dir.join("distcc")
    }

    /// Where ssh hosts' master connections have their control sockets.
    pub(crate) fn ssh_dir(&self) -> PathBuf {
        self.runtime_dir.join("ssh")
    }

    /// The broker's log file.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.state_dir.join("broker.log")
    }

    /// Where a full log is set aside.
    pub(crate) fn old_log_file(&self) -> PathBuf {
        self.state_dir.join("broker.log.old")
    }
}

/// Creates `dir` (and parents) and makes sure it is private to this user:
/// owned by us, writable by no one else (an open one is refused: another
/// user could replace the socket), and mode 0700.
pub(crate) fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // Not through a link: another user could have made it point anywhere.
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory (a symbolic link?); remove it",
                dir.display()
            ),
        ));
    }
    let uid = crate::sys::euid();
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

/// Creates `path` anew (never an existing file, never through a link),
/// readable and writable by this user only.
pub(crate) fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Opens `path` for appending, creating it private to this user; refuses a
/// link, or a file another user owns.
pub(crate) fn append_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.uid() != crate::sys::euid() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} is not a file of this user's", path.display()),
        ));
    }
    // A file an earlier tcpb made under the umask becomes private too.
    if meta.mode() & 0o077 != 0 {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
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

    fn xdg() -> Bases {
        Bases {
            runtime: Some("/run/user/7".into()),
            state: Some("/h/.local/state".into()),
            config: Some("/h/.config".into()),
            data: Some("/h/.local/share".into()),
        }
    }

    #[test]
    fn xdg_locations() {
        let p = Paths::resolve(env(&[]), xdg());
        assert_eq!(p.socket(), PathBuf::from("/run/user/7/tcpb/broker.sock"));
        assert_eq!(
            p.log_file(),
            PathBuf::from("/h/.local/state/tcpb/broker.log")
        );
        assert_eq!(p.config_file, PathBuf::from("/h/.config/tcpb/config.toml"));
        assert_eq!(
            p.masquerade_dir,
            PathBuf::from("/h/.local/share/tcpb/masquerade")
        );
    }

    #[test]
    fn overrides_win() {
        let p = Paths::resolve(
            env(&[
                ("TCPB_RUNTIME_DIR", "/r"),
                ("TCPB_STATE_DIR", "/s"),
                ("TCPB_CONFIG", "/c.toml"),
                ("TCPB_MASQUERADE_DIR", ""),
            ]),
            xdg(),
        );
        assert_eq!(p.runtime_dir, PathBuf::from("/r"));
        assert_eq!(p.state_dir, PathBuf::from("/s"));
        assert_eq!(p.config_file, PathBuf::from("/c.toml"));
        assert_eq!(
            p.masquerade_dir,
            PathBuf::from("/h/.local/share/tcpb/masquerade"),
            "an empty override is no override"
        );
    }

    #[test]
    fn no_runtime_dir_falls_back_to_tmp() {
        let bases = Bases {
            runtime: None,
            ..xdg()
        };
        let p = Paths::resolve(env(&[]), bases);
        assert!(p.runtime_dir.starts_with(std::env::temp_dir()));
        assert!(
            p.runtime_dir
                .ends_with(format!("tcpb-{}", crate::sys::euid()))
        );
    }

    #[test]
    fn the_environment_is_read_through_directories() {
        // Only checks agreement with the crate on this machine's
        // environment; the tests above pin the rules.
        let p = Paths::from_env();
        if let Some(b) = directories::BaseDirs::new()
            && std::env::var_os("TCPB_STATE_DIR").is_none()
        {
            assert_eq!(p.state_dir, b.state_dir().unwrap().join("tcpb"));
        }
    }
}
