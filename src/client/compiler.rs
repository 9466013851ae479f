//! Finding the real compiler: the first one on PATH that is neither tcpb
//! itself nor a distcc masquerade link.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The compiler to run, and what stood in the way.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The real compiler's path.
    pub path: PathBuf,
    /// What distcc is told to run: the name as the user gave it, or the
    /// bare name when the given path led back to tcpb.
    pub distcc_name: OsString,
    /// PATH directories holding tcpb or distcc links for this name; they are
    /// left out of the PATH that distcc sees.
    pub skipped_dirs: Vec<PathBuf>,
}

/// Why no real compiler could be found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CompilerError {
    /// PATH could not be searched.
    #[error("cannot search PATH for \"{name}\": {source}")]
    Search {
        /// The compiler's name.
        name: String,
        /// Why.
        source: which::Error,
    },
    /// Nothing but tcpb or distcc links of that name on PATH.
    #[error("no real compiler \"{name}\" found on PATH{skipped}")]
    NotFound {
        /// The compiler's name.
        name: String,
        /// The directories of links passed over, as a clause.
        skipped: String,
    },
}

/// True for tcpb itself or any distcc binary.
fn is_wrapper(candidate: &Path, me: &Path) -> bool {
    match candidate.canonicalize() {
        Ok(real) => real == me || real.file_name() == Some(OsStr::new("distcc")),
        Err(_) => false,
    }
}

/// Resolves `name` (bare, or a path) against `path_var`.
pub(crate) fn resolve(
    name: &OsStr,
    path_var: Option<&OsStr>,
    cwd: &Path,
    me: &Path,
) -> Result<Resolved, CompilerError> {
    let given = Path::new(name);
    let bare: OsString = given.file_name().unwrap_or(name).to_os_string();
    if given.components().count() > 1 && !is_wrapper(given, me) {
        return Ok(Resolved {
            path: given.to_path_buf(),
            distcc_name: name.to_os_string(),
            skipped_dirs: Vec::new(),
        });
    }
    let mut skipped_dirs = Vec::new();
    let name = bare.to_string_lossy().into_owned();
    let found = which::which_in_all(&bare, path_var, cwd).map_err(|source| {
        let name = name.clone();
        CompilerError::Search { name, source }
    })?;
    for candidate in found {
        if is_wrapper(&candidate, me) {
            if let Some(dir) = candidate.parent() {
                skipped_dirs.push(dir.to_path_buf());
            }
            continue;
        }
        return Ok(Resolved {
            path: candidate,
            distcc_name: bare,
            skipped_dirs,
        });
    }
    let skipped = if skipped_dirs.is_empty() {
        String::new()
    } else {
        let dirs: Vec<String> = skipped_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        format!(" (skipped tcpb/distcc links in {})", dirs.join(", "))
    };
    Err(CompilerError::NotFound { name, skipped })
}

/// `path_var` without the directories in `skip`.
pub(crate) fn clean_path(path_var: Option<&OsStr>, skip: &[PathBuf]) -> Option<OsString> {
    let path_var = path_var?;
    if skip.is_empty() {
        return Some(path_var.to_os_string());
    }
    let kept: Vec<PathBuf> = std::env::split_paths(path_var)
        .filter(|d| !skip.iter().any(|s| s == d))
        .collect();
    std::env::join_paths(kept).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn skips_self_and_distcc_links() {
        let t = tempfile::tempdir().unwrap();
        let me = t.path().join("bin/tcpb");
        let real = t.path().join("real/gcc");
        let fake_distcc = t.path().join("dbin/distcc");
        for p in [&me, &real, &fake_distcc] {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let masq = t.path().join("masq");
        let dmasq = t.path().join("dmasq");
        std::fs::create_dir_all(&masq).unwrap();
        std::fs::create_dir_all(&dmasq).unwrap();
        symlink(&me, masq.join("gcc")).unwrap();
        symlink(&fake_distcc, dmasq.join("gcc")).unwrap();
        let me = me.canonicalize().unwrap();
        let path =
            std::env::join_paths([&masq, &dmasq, &real.parent().unwrap().to_path_buf()]).unwrap();

        let r = resolve(OsStr::new("gcc"), Some(&path), t.path(), &me).unwrap();
        assert_eq!(r.path, real);
        assert_eq!(r.distcc_name, "gcc");
        assert_eq!(r.skipped_dirs, vec![masq.clone(), dmasq.clone()]);
        let cleaned = clean_path(Some(&path), &r.skipped_dirs).unwrap();
        assert_eq!(cleaned, real.parent().unwrap().as_os_str());

        // An explicit path to a masquerade link falls back to a PATH search.
        let r = resolve(masq.join("gcc").as_os_str(), Some(&path), t.path(), &me).unwrap();
        assert_eq!(r.path, real);
        // An explicit real compiler is used as given.
        let r = resolve(real.as_os_str(), Some(&path), t.path(), &me).unwrap();
        assert_eq!(r.distcc_name, real.as_os_str());

        let only_links = std::env::join_paths([&masq]).unwrap();
        let e = resolve(OsStr::new("gcc"), Some(&only_links), t.path(), &me)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no real compiler \"gcc\"") && e.contains("masq"),
            "{e}"
        );
    }
}
