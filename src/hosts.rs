//! distcc's host list: where distcc reads it and its grammar.
//!
//! Lookup order (as distcc 3.4): `$DISTCC_HOSTS`, else `$DISTCC_DIR/hosts`
//! (`~/.distcc/hosts` when `DISTCC_DIR` is unset), else `/etc/distcc/hosts`.

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// distcc's default TCP port.
pub(crate) const DEFAULT_PORT: u16 = 3632;
/// distcc's default slot count for a remote host.
pub(crate) const DEFAULT_REMOTE_SLOTS: u32 = 4;
/// distcc's default slot count for `localhost`.
pub(crate) const DEFAULT_LOCAL_SLOTS: u32 = 2;

/// One usable entry of a host list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HostEntry {
    /// `localhost[/N]`: run on this machine.
    Local {
        /// Slots.
        slots: u32,
    },
    /// `HOST[:PORT][/LIMIT][,lzo][,cpp]`: a distccd reached over TCP.
    Tcp {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// Slots.
        slots: u32,
        /// `,lzo`: compress.
        lzo: bool,
        /// `,cpp`: pump mode.
        cpp: bool,
    },
}

impl HostEntry {
    /// The name tcpb shows and matches on: `addr:port`, or `localhost`.
    pub(crate) fn name(&self) -> String {
        match self {
            HostEntry::Local { .. } => "localhost".to_string(),
            HostEntry::Tcp { host, port, .. } => host_port_name(host, *port),
        }
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn host_port_name(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// distcc's option suffix for a host: `,lzo`, `,cpp`, both or none.
pub(crate) fn options_suffix(lzo: bool, cpp: bool) -> &'static str {
    match (lzo, cpp) {
        (false, false) => "",
        (true, false) => ",lzo",
        (false, true) => ",cpp",
        (true, true) => ",lzo,cpp",
    }
}

/// A parsed host list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostList {
    /// Where it came from: `DISTCC_HOSTS`, a file path, or empty for none.
    pub origin: String,
    /// Usable entries, in order.
    pub entries: Vec<HostEntry>,
    /// `--localslots=N`.
    pub localslots: Option<u32>,
    /// `--localslots_cpp=N`: passed on to distcc, which limits pump mode's
    /// local preprocessing with it.
    pub localslots_cpp: Option<u32>,
    /// Entries accepted but skipped, with why (ssh hosts, zeroconf).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// A host entry tcpb cannot understand, with where it was.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad host entry \"{entry}\" in {origin}: {reason}")]
pub struct HostsError {
    /// Where: `DISTCC_HOSTS` or `FILE line N`.
    pub origin: String,
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses the text of a host list. `origin` names its source in errors.
pub fn parse(text: &str, origin: &str) -> Result<HostList, HostsError> {
    let mut list = HostList {
        origin: origin.to_string(),
        ..HostList::default()
    };
    let is_file = origin != "DISTCC_HOSTS";
    for (lineno, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let place = if is_file {
            format!("{origin} line {}", lineno + 1)
        } else {
            origin.to_string()
        };
        for token in line.split_whitespace() {
            parse_token(token, &place, &mut list)?;
        }
    }
    Ok(list)
}

fn parse_token(token: &str, place: &str, list: &mut HostList) -> Result<(), HostsError> {
    let err = |reason: String| HostsError {
        origin: place.to_string(),
        entry: token.to_string(),
        reason,
    };
    if let Some(opt) = token.strip_prefix("--") {
        let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
        let number = || {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| err(format!("--{key} needs a positive number")))
        };
        match key {
            "randomize" if value.is_empty() => {}
            "localslots" => list.localslots = Some(number()?),
            "localslots_cpp" => list.localslots_cpp = Some(number()?),
            _ => return Err(err("unknown option".to_string())),
        }
        return Ok(());
    }
    if token == "+zeroconf" {
        list.warnings.push(format!(
            "{place}: \"+zeroconf\" is not supported by tcpb; skipped"
        ));
        return Ok(());
    }
    if token.contains('@') {
        list.warnings.push(format!(
            "{place}: ssh host \"{token}\" is not supported by tcpb; skipped"
        ));
        return Ok(());
    }
    if token == "localhost" || token.starts_with("localhost/") {
        let slots = match token.strip_prefix("localhost/") {
            Some(n) => parse_slots(n).map_err(err)?,
            None => DEFAULT_LOCAL_SLOTS,
        };
        list.entries.push(HostEntry::Local { slots });
        return Ok(());
    }
    list.entries.push(parse_tcp(token).map_err(err)?);
    Ok(())
}

fn parse_slots(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("slot limit \"{s}\" is not a positive number")),
    }
}

fn parse_tcp(token: &str) -> Result<HostEntry, String> {
    let mut parts = token.split(',');
    let hostpart = parts.next().unwrap_or("");
    let (mut lzo, mut cpp) = (false, false);
    for opt in parts {
        match opt {
            "lzo" => lzo = true,
            "cpp" => cpp = true,
            _ => {
                return Err(format!(
                    "unknown option \",{opt}\" (tcpb knows ,lzo and ,cpp)"
                ));
            }
        }
    }
    let (addr, slots) = match hostpart.split_once('/') {
        Some((a, n)) => (a, parse_slots(n)?),
        None => (hostpart, DEFAULT_REMOTE_SLOTS),
    };
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or("unclosed \"[\" in IPv6 address")?;
        match after {
            "" => (h, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("unexpected \"{after}\" after \"]\"")),
            },
        }
    } else {
        match addr.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (addr, None),
        }
    };
    if host.is_empty() {
        return Err("missing host name".to_string());
    }
    if host.contains(['[', ']', '/']) {
        return Err(format!("\"{host}\" is not a host name"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("port \"{p}\" is not a number from 1 to 65535")),
        },
    };
    Ok(HostEntry::Tcp {
        host: host.to_string(),
        port,
        slots,
        lzo,
        cpp,
    })
}

/// An unreadable hosts file, named.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FarmError {
    /// A host entry is malformed.
    #[error(transparent)]
    Parse(#[from] HostsError),
    /// A hosts file exists but cannot be read.
    #[error("cannot read hosts file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Finds and parses the host list exactly where distcc would. With no
/// list anywhere, returns an empty list whose origin is empty.
pub(crate) fn load(get: impl Fn(&str) -> Option<OsString>) -> Result<HostList, FarmError> {
    if let Some(text) = get("DISTCC_HOSTS") {
        return Ok(parse(&text.to_string_lossy(), "DISTCC_HOSTS")?);
    }
    let user_file = match get("DISTCC_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("hosts"),
        None => PathBuf::from(get("HOME").unwrap_or_default()).join(".distcc/hosts"),
    };
    for path in [user_file, PathBuf::from("/etc/distcc/hosts")] {
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(parse(&text, &path.to_string_lossy())?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(FarmError::Read { path, source }),
        }
    }
    Ok(HostList::default())
}

impl fmt::Display for HostEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostEntry::Local { slots } => write!(f, "localhost/{slots}"),
            HostEntry::Tcp {
                host,
                port,
                slots,
                lzo,
                cpp,
            } => {
                let opts = options_suffix(*lzo, *cpp);
                write!(f, "{}/{slots}{opts}", host_port_name(host, *port))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, slots: u32, lzo: bool, cpp: bool) -> HostEntry {
        HostEntry::Tcp {
            host: host.into(),
            port,
            slots,
            lzo,
            cpp,
        }
    }

    #[test]
    fn full_grammar() {
        let l = parse(
            "--randomize --localslots=3 --localslots_cpp=9\n\
             localhost/6 build1 build2:4000 build3/8 10.0.0.4:3633/2,lzo \
             [::1] [fe80::1]:4000/3,lzo,cpp  # comment build9\n\
             me@sshhost/2 +zeroconf\n",
            "DISTCC_HOSTS",
        )
        .unwrap();
        assert_eq!(l.localslots, Some(3));
        assert_eq!(l.localslots_cpp, Some(9));
        assert_eq!(
            l.entries,
            vec![
                HostEntry::Local { slots: 6 },
                tcp("build1", 3632, 4, false, false),
                tcp("build2", 4000, 4, false, false),
                tcp("build3", 3632, 8, false, false),
                tcp("10.0.0.4", 3633, 2, true, false),
                tcp("::1", 3632, 4, false, false),
                tcp("fe80::1", 4000, 3, true, true),
            ]
        );
        assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
        assert_eq!(l.entries[6].name(), "[fe80::1]:4000");
        assert_eq!(l.entries[6].to_string(), "[fe80::1]:4000/3,lzo,cpp");
    }

    #[test]
    fn localhost_default_slots() {
        let l = parse("localhost", "DISTCC_HOSTS").unwrap();
        assert_eq!(l.entries, vec![HostEntry::Local { slots: 2 }]);
    }

    #[test]
    fn errors_quote_entry_and_place() {
        let e = parse("good\n\nbuild1:port9", "/etc/distcc/hosts").unwrap_err();
        assert_eq!(e.entry, "build1:port9");
        assert_eq!(e.origin, "/etc/distcc/hosts line 3");
        assert!(e.to_string().contains("\"build1:port9\""), "{e}");
        for bad in [
            "h/0",
            "h/x",
            "h:0",
            "h:70000",
            "h,gzip",
            "[::1",
            "[::1]x",
            ":3632",
            "--bogus",
            "--localslots=0",
        ] {
            let e = parse(bad, "DISTCC_HOSTS").unwrap_err();
            assert_eq!(e.entry, bad);
            assert_eq!(e.origin, "DISTCC_HOSTS");
        }
    }

    #[test]
    fn lookup_order() {
        let dir = tempfile::tempdir().unwrap();
        let ddir = dir.path().join("dd");
        std::fs::create_dir_all(&ddir).unwrap();
        std::fs::write(ddir.join("hosts"), "fromfile/2\n").unwrap();
        let dd = ddir.clone().into_os_string();
        let env = |with_var: bool| {
            let dd = dd.clone();
            move |k: &str| match k {
                "DISTCC_HOSTS" if with_var => Some("fromenv".into()),
                "DISTCC_DIR" => Some(dd.clone()),
                _ => None,
            }
        };
        let l = load(env(true)).unwrap();
        assert_eq!(l.origin, "DISTCC_HOSTS");
        let l = load(env(false)).unwrap();
        assert!(l.origin.ends_with("dd/hosts"));
        assert_eq!(l.entries[0].name(), "fromfile:3632");

        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".distcc")).unwrap();
        std::fs::write(home.join(".distcc/hosts"), "h1 h2").unwrap();
        let h = home.into_os_string();
        let l = load(|k: &str| (k == "HOME").then(|| h.clone())).unwrap();
        assert_eq!(l.entries.len(), 2);
    }
}
