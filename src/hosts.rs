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
    /// `[USER]@HOST[/LIMIT][:COMMAND][,lzo][,cpp]`: `distccd --inetd` run
    /// over ssh for each job.
    Ssh {
        /// Who and where, and the command.
        ssh: SshHost,
        /// Slots.
        slots: u32,
        /// `,lzo`: compress.
        lzo: bool,
        /// `,cpp`: pump mode.
        cpp: bool,
    },
}

/// An ssh host: distcc runs `ssh [-l USER] HOST COMMAND --inetd` per job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SshHost {
    /// The login name; `None` leaves it to ssh (its config, or the user's).
    pub user: Option<String>,
    /// The host, as ssh is to be given it.
    pub host: String,
    /// distccd's path on the host; `None` for `distccd`.
    pub command: Option<String>,
}

impl SshHost {
    /// The command ssh runs on the host.
    pub(crate) fn command(&self) -> &str {
        self.command.as_deref().unwrap_or("distccd")
    }
}

impl fmt::Display for SshHost {
    /// `[USER]@HOST[:COMMAND]`: the entry without its limit and options.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.user.as_deref().unwrap_or("");
        write!(f, "{user}@{}", self.host)?;
        match &self.command {
            Some(c) => write!(f, ":{c}"),
            None => Ok(()),
        }
    }
}

impl HostEntry {
    /// The name tcpb shows and matches on: `addr:port`, or `localhost`.
    pub(crate) fn name(&self) -> String {
        match self {
            HostEntry::Local { .. } => "localhost".to_string(),
            HostEntry::Tcp { host, port, .. } => host_port_name(host, *port),
            HostEntry::Ssh { ssh, .. } => ssh.to_string(),
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
    /// Entries accepted but skipped, with why (zeroconf).
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
            if list.entries.len() > crate::limits::MAX_HOSTS {
                return Err(HostsError {
                    origin: place,
                    entry: token.to_string(),
                    reason: format!(
                        "the list names more than {} hosts",
                        crate::limits::MAX_HOSTS
                    ),
                });
            }
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
            let n = value
                .parse::<u32>()
                .map_err(|_| err(format!("--{key} needs a positive number")))?;
            crate::limits::slots(n).map_err(|e| err(format!("--{key}: {e}")))
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
    let entry = if token == "localhost" || token.starts_with("localhost/") {
        let slots = match token.strip_prefix("localhost/") {
            Some(n) => parse_slots(n).map_err(err)?,
            None => DEFAULT_LOCAL_SLOTS,
        };
        HostEntry::Local { slots }
    } else if token.contains('@') {
        parse_ssh(token).map_err(err)?
    } else {
        parse_tcp(token).map_err(err)?
    };
    list.entries.push(entry);
    Ok(())
}

/// `,lzo` and `,cpp` after a host.
fn parse_options<'a>(opts: impl Iterator<Item = &'a str>) -> Result<(bool, bool), String> {
    let (mut lzo, mut cpp) = (false, false);
    for opt in opts {
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
    Ok((lzo, cpp))
}

/// distcc's order (its `dcc_parse_ssh_host`): user up to `@`, host up to
/// `/`, `:` or `,`, then the limit, then `:COMMAND`, then options.
fn parse_ssh(token: &str) -> Result<HostEntry, String> {
    let mut parts = token.split(',');
    let main = parts.next().unwrap_or("");
    let (lzo, cpp) = parse_options(parts)?;
    let (user, rest) = main.split_once('@').unwrap_or(("", main));
    let host_end = rest.find(['/', ':']).unwrap_or(rest.len());
    let (host, mut rest) = rest.split_at(host_end);
    if host.is_empty() {
        return Err("missing host name after \"@\"".to_string());
    }
    if user.contains(['/', ':']) || host.contains('@') {
        return Err(format!("\"{main}\" is not USER@HOST"));
    }
    let mut slots = DEFAULT_REMOTE_SLOTS;
    if let Some(after) = rest.strip_prefix('/') {
        let (n, tail) = after.split_at(after.find(':').unwrap_or(after.len()));
        slots = parse_slots(n)?;
        rest = tail;
    }
    let command = match rest.strip_prefix(':') {
        Some("") => return Err("empty command after \":\"".to_string()),
        Some(c) => Some(c.to_string()),
        None if rest.is_empty() => None,
        None => return Err(format!("unexpected \"{rest}\" after the host")),
    };
    let ssh = SshHost {
        user: (!user.is_empty()).then(|| user.to_string()),
        host: host.to_string(),
        command,
    };
    Ok(HostEntry::Ssh {
        ssh,
        slots,
        lzo,
        cpp,
    })
}

fn parse_slots(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n > 0 => crate::limits::slots(n),
        // Digits too many for a u32 are over the limit too.
        Err(_) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Err(format!(
            "{s} slots is over the limit of {}",
            crate::limits::MAX_SLOTS
        )),
        _ => Err(format!("slot limit \"{s}\" is not a positive number")),
    }
}

fn parse_tcp(token: &str) -> Result<HostEntry, String> {
    let mut parts = token.split(',');
    let hostpart = parts.next().unwrap_or("");
    let (lzo, cpp) = parse_options(parts)?;
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
            HostEntry::Ssh {
                ssh,
                slots,
                lzo,
                cpp,
            } => {
                let opts = options_suffix(*lzo, *cpp);
                let user = ssh.user.as_deref().unwrap_or("");
                let command = ssh.command.as_deref().map(|c| format!(":{c}"));
                let command = command.unwrap_or_default();
                write!(f, "{user}@{}/{slots}{command}{opts}", ssh.host)
            }
        }
    }
}

#[cfg(test)]
#[path = "hosts_tests.rs"]
mod tests;
