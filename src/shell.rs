//! Shell integration: `tcpb init SHELL` prints the script from `shell/`
//! for `eval` (the masquerade directory on PATH, optionally CC and CXX),
//! and `tcpb masquerade install` fills that directory with links to tcpb
//! named like the compilers found on PATH.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// A shell `tcpb init` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Shell {
    /// bash (`eval "$(tcpb init bash)"`).
    Bash,
    /// zsh (`eval "$(tcpb init zsh)"`).
    Zsh,
    /// fish (`tcpb init fish | source`).
    Fish,
}

/// The script for `shell` with `dir` as the masquerade directory; with
/// `cc`, it also sets CC and CXX to tcpb.
pub(crate) fn init_script(shell: Shell, dir: &Path, cc: bool) -> String {
    let (template, quoted) = match shell {
        Shell::Bash => (include_str!("../shell/tcpb.bash"), posix_quote(dir)),
        Shell::Zsh => (include_str!("../shell/tcpb.zsh"), posix_quote(dir)),
        Shell::Fish => (include_str!("../shell/tcpb.fish"), fish_quote(dir)),
    };
    template
        .replace("__TCPB_DIR__", &quoted)
        .replace("__TCPB_CC__", if cc { "1" } else { "0" })
}

/// `s` in single quotes for sh, bash and zsh.
fn posix_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}

/// `s` in single quotes for fish, where `\` and `'` are escaped inside.
fn fish_quote(p: &Path) -> String {
    let s = p.to_string_lossy();
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

/// Compiler names linked when they are found on PATH.
const NAMES: &[&str] = &["cc", "c++", "gcc", "g++", "clang", "clang++"];

/// True for versioned or target-prefixed compiler names: `gcc-12`,
/// `clang++-16`, `x86_64-linux-gnu-gcc`, `x86_64-linux-gnu-g++-12`.
fn is_compiler_name(name: &str) -> bool {
    let base = name.rsplit_once("-linux-gnu-").map_or(name, |(_, b)| b);
    let unversioned = match base.rsplit_once('-') {
        Some((b, v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') => b,
        _ => base,
    };
    NAMES.contains(&unversioned)
}

/// What `install` did with one name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Linked {
    /// A new link.
    Created(String),
    /// A link to this tcpb was there already.
    Kept(String),
    /// Something else has the name; left alone.
    Skipped(String, String),
}

/// Links `dir/NAME` to `me` for every compiler name found on `path_var`
/// (outside `dir` and distcc's own masquerade directories).
/// Removes from `dir` the symbolic links that lead to `me`, then `dir`
/// itself if nothing else is left in it. Returns the names removed and
/// the names of other files, left alone.
pub(crate) fn uninstall(dir: &Path, me: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{} does not exist: nothing to remove", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let is_link = path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if is_link && path.canonicalize().is_ok_and(|real| real == me) {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            removed.push(name);
        } else {
            kept.push(name);
        }
    }
    removed.sort();
    kept.sort();
    if kept.is_empty() {
        std::fs::remove_dir(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok((removed, kept))
}

pub(crate) fn install(dir: &Path, me: &Path, path_var: Option<&OsStr>) -> Result<Vec<Linked>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    only_mine(dir)?;
    let dir_real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut names: Vec<String> = Vec::new();
    for d in std::env::split_paths(path_var.unwrap_or_default()) {
        let real = d.canonicalize().unwrap_or_else(|_| d.clone());
        if real == dir_real || real.to_string_lossy().contains("distcc") {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_compiler_name(&name) && is_executable(&e.path()) && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        bail!("no compiler (gcc, g++, cc, c++, clang, clang++) found on PATH");
    }
    names.sort();
    names.into_iter().map(|name| link(dir, me, name)).collect()
}

/// Refuses a directory another user owns or may write to: what else is
/// in it would run, first on `PATH`, as this user.
fn only_mine(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let me = crate::sys::euid();
    if meta.uid() != me {
        bail!(
            "{} belongs to uid {}, not to this user (uid {me}): its programs would run as you",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "{} is writable by other users (mode {:o}): what they put there would run as you; \
             run: chmod go-w {}",
            dir.display(),
            meta.mode() & 0o777,
            dir.display()
        );
    }
    Ok(())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn link(dir: &Path, me: &Path, name: String) -> Result<Linked> {
    let at = dir.join(&name);
    match std::fs::read_link(&at) {
        Ok(target) if target == me => return Ok(Linked::Kept(name)),
        Ok(target) => {
            let why = format!("links to {}", target.display());
            return Ok(Linked::Skipped(name, why));
        }
        Err(_) if at.symlink_metadata().is_ok() => {
            return Ok(Linked::Skipped(name, "is a file, not a link".into()));
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(me, &at)
        .with_context(|| format!("cannot link {} to {}", at.display(), me.display()))?;
    Ok(Linked::Created(name))
}

/// This tcpb, for links to point at.
pub(crate) fn this_exe() -> Result<PathBuf> {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find this tcpb executable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_names() {
        for n in [
            "gcc",
            "g++",
            "cc",
            "c++",
            "clang",
            "clang++",
            "gcc-12",
            "clang++-16",
        ] {
            assert!(is_compiler_name(n), "{n}");
        }
        for n in [
            "x86_64-linux-gnu-gcc",
            "x86_64-linux-gnu-g++-12",
            "clang-16.0",
        ] {
            assert!(is_compiler_name(n), "{n}");
        }
        for n in [
            "gcc-ar",
            "gcc-nm-12",
            "c++filt",
            "ccache",
            "gccgo",
            "tcpb",
            "clang-format",
        ] {
            assert!(!is_compiler_name(n), "{n}");
        }
    }

    #[test]
    fn quoting_survives_odd_paths() {
        let p = Path::new("/home/o'brien/my dir\\x");
        assert_eq!(posix_quote(p), r"'/home/o'\''brien/my dir\x'");
        assert_eq!(fish_quote(p), r"'/home/o\'brien/my dir\\x'");
        let s = init_script(Shell::Bash, p, true);
        assert!(s.contains("_tcpb_dir='/home/o'\\''brien/my dir\\x'") && s.contains("_tcpb_cc=1"));
        assert!(!init_script(Shell::Fish, p, false).contains("__TCPB"));
    }

    #[test]
    fn install_links_found_compilers_and_leaves_others_alone() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for n in ["gcc", "g++-12", "gcc-ar", "notes.txt"] {
            std::fs::write(bin.join(n), "").unwrap();
            let mode = if n.ends_with(".txt") { 0o644 } else { 0o755 };
            std::fs::set_permissions(bin.join(n), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let dir = t.path().join("masq");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("g++-12"), "mine").unwrap();
        let me = Path::new("/opt/tcpb");
        let path = std::env::join_paths([&bin, &dir]).unwrap();
        let got = install(&dir, me, Some(&path)).unwrap();
        assert_eq!(
            got,
            [
                Linked::Skipped("g++-12".into(), "is a file, not a link".into()),
                Linked::Created("gcc".into()),
            ]
        );
        assert_eq!(std::fs::read_link(dir.join("gcc")).unwrap(), me);
        let again = install(&dir, me, Some(&path)).unwrap();
        assert!(again.contains(&Linked::Kept("gcc".into())));
    }
}
