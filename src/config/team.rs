//! `[team]`: team mode, many workstations' brokers sharing one farm through
//! etcd. Absent, the broker is on its own and needs no etcd.

use serde::Deserialize;

/// What a broker uses of a farm host while etcd cannot confirm its claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Offline {
    /// The claims it held when etcd went away, never more: builds go on at
    /// the last fair share. While etcd is down for everyone, those shares
    /// add up to at most each host's slots; a workstation cut off alone may
    /// overlap with the others by its own share once its lease expires.
    #[default]
    Share,
    /// Nothing of the farm: compiles run on this machine until etcd answers.
    Local,
}

/// The `[team]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// etcd's client URLs, `http://HOST:PORT`, tried in order.
    pub endpoints: Vec<String>,
    /// The team's farm: the namespace of its keys, so several farms can
    /// share one etcd.
    pub farm: String,
    /// Seconds of the broker's etcd lease: its claims outlive a dead
    /// workstation by at most this.
    #[serde(default = "default_ttl")]
    pub lease_ttl_s: u64,
    /// This user's share of the farm against the others' (default 1).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// What the broker uses while etcd cannot confirm its claims.
    #[serde(default)]
    pub offline: Offline,
    /// The etcd user calls are made as (with `password_file`).
    pub user: Option<String>,
    /// An absolute path to a file only its owner can read, holding the
    /// user's password (one line).
    pub password_file: Option<String>,
    /// The password, read from `password_file` by `Config::load`.
    #[serde(skip)]
    pub password: Option<Secret>,
    /// etcd over TLS (`https://` endpoints): an absolute path to the PEM
    /// certificate of the CA that signed the members' certificates.
    pub ca: Option<String>,
    /// This client's PEM certificate (chain), when etcd asks clients for
    /// one (`--client-cert-auth`); with `key`.
    pub cert: Option<String>,
    /// An absolute path to `cert`'s PEM private key, which only its owner
    /// may be able to read.
    pub key: Option<String>,
    /// The TLS set-up read from `ca`, `cert` and `key` by `Config::load`.
    #[serde(skip)]
    pub tls: Option<crate::broker::team::tls::Tls>,
}

/// A password: never shown by `{:?}`.
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn default_ttl() -> u64 {
    10
}

fn default_weight() -> f64 {
    1.0
}

/// The shortest lease: keep-alives go every third of it.
pub(crate) const MIN_TTL_S: u64 = 2;
/// The longest lease: a dead workstation's slots stay held this long.
pub(crate) const MAX_TTL_S: u64 = 3600;

impl TeamConfig {
    /// The team's farm `farm` at etcd `endpoints`, every other value its
    /// default (as `config.toml` with only those two keys).
    pub fn new(endpoints: &[String], farm: &str) -> TeamConfig {
        TeamConfig {
            endpoints: endpoints.to_vec(),
            farm: farm.to_string(),
            lease_ttl_s: default_ttl(),
            weight: default_weight(),
            offline: Offline::default(),
            user: None,
            password_file: None,
            password: None,
            ca: None,
            cert: None,
            key: None,
            tls: None,
        }
    }

    /// Every value usable, or what is wrong with the first that is not.
    pub fn check(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("[team] endpoints is empty: name etcd's http://HOST:PORT".to_string());
        }
        crate::broker::team::etcd::Etcd::new(&self.endpoints, std::time::Duration::from_secs(1))
            .map_err(|e| format!("[team] {e}"))?;
        let farm_ok = !self.farm.is_empty()
            && self.farm.len() <= 64
            && self
                .farm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !farm_ok {
            return Err(format!(
                "[team] farm = {:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                self.farm
            ));
        }
        if !(MIN_TTL_S..=MAX_TTL_S).contains(&self.lease_ttl_s) {
            return Err(format!(
                "[team] lease_ttl_s = {}: it must be from {MIN_TTL_S} to {MAX_TTL_S}",
                self.lease_ttl_s
            ));
        }
        if !(self.weight.is_finite() && (0.001..=1000.0).contains(&self.weight)) {
            return Err(format!(
                "[team] weight = {}: it must be a number from 0.001 to 1000",
                self.weight
            ));
        }
        match (&self.user, &self.password_file) {
            (Some(_), None) | (None, Some(_)) => {
                return Err("[team] user and password_file go together".to_string());
            }
            (Some(u), Some(_)) if u.is_empty() => {
                return Err("[team] user is empty".to_string());
            }
            (_, Some(f)) if !f.starts_with('/') => {
                return Err(format!(
                    "[team] password_file = {f:?}: use an absolute path"
                ));
            }
            _ => {}
        }
        self.check_tls()
    }

    /// TLS asked for by `https://` endpoints and `ca` together; `cert`
    /// and `key` together; absolute paths.
    fn check_tls(&self) -> Result<(), String> {
        let https = self.endpoints.iter().any(|e| e.starts_with("https://"));
        match (https, &self.ca) {
            (true, None) => {
                return Err(
                    "[team] endpoints use https://: set ca, the PEM certificate of \
                     the CA that signed etcd's"
                        .to_string(),
                );
            }
            (false, Some(_)) => {
                return Err("[team] ca is set but the endpoints use http://: use https://".into());
            }
            _ => {}
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err("[team] cert and key go together".to_string());
        }
        let files = [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)];
        for (name, file) in files {
            if let Some(f) = file.as_ref().filter(|f| !f.starts_with('/')) {
                return Err(format!("[team] {name} = {f:?}: use an absolute path"));
            }
        }
        Ok(())
    }

    /// Reads `ca`, `cert` and `key`; the key only its owner may be able
    /// to read (as ssh wants of a private key).
    pub(crate) fn read_tls(&mut self) -> Result<(), String> {
        let Some(ca) = &self.ca else {
            return Ok(());
        };
        let client = self.cert.as_deref().zip(self.key.as_deref());
        if let Some((_, key)) = client {
            private_to_owner("key", key)?;
        }
        self.tls = Some(crate::broker::team::tls::Tls::load(ca, client)?);
        Ok(())
    }

    /// Reads the password from `password_file`, which only its owner may
    /// be able to read (as ssh wants of a private key).
    pub(crate) fn read_password(&mut self) -> Result<(), String> {
        let Some(file) = &self.password_file else {
            return Ok(());
        };
        let bad = |why: String| format!("[team] password_file {file}: {why}");
        private_to_owner("password_file", file)?;
        let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
        let password = text.trim_end_matches(['\n', '\r']);
        if password.is_empty() || password.contains('\n') {
            return Err(bad("it must hold the password on one line".to_string()));
        }
        self.password = Some(Secret(password.to_string()));
        Ok(())
    }
}

/// `[team] NAME = file` exists and only its owner may read it.
fn private_to_owner(name: &str, file: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |why: String| format!("[team] {name} {file}: {why}");
    let meta = std::fs::metadata(file).map_err(|e| bad(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "other users can read it (mode {mode:o}): chmod 600 it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, "/c.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_a_full_table() {
        assert_eq!(parse("").unwrap().team, None, "alone by default");
        let c = parse("[team]\nendpoints = [\"http://127.0.0.1:2379\"]\nfarm = \"lab\"\n").unwrap();
        let t = c.team.unwrap();
        assert_eq!((t.lease_ttl_s, t.weight), (10, 1.0));
        assert_eq!(t.offline, super::Offline::Share);
        let c = parse(
            "[team]\nendpoints = [\"http://e1:2379\", \"http://e2\"]\nfarm = \"ci-1\"\n\
             lease_ttl_s = 5\nweight = 2.5\noffline = \"local\"\n",
        )
        .unwrap();
        assert_eq!(c.team.unwrap().offline, super::Offline::Local);
    }

    #[test]
    fn bad_values_are_refused_with_key_and_file() {
        let base = "[team]\nendpoints = [\"http://127.0.0.1:2379\"]\nfarm = \"lab\"\n";
        for (extra, named) in [
            ("lease_ttl_s = 1\n", "lease_ttl_s = 1"),
            ("lease_ttl_s = 99999999\n", "lease_ttl_s"),
            ("weight = 0.0\n", "weight = 0"),
            ("weight = nan\n", "weight = NaN"),
            ("offline = \"maybe\"\n", "maybe"),
            ("password_file = \"/p\"\n", "go together"),
            ("user = \"u\"\n", "go together"),
            ("user = \"u\"\npassword_file = \"p\"\n", "absolute path"),
            ("ca = \"/ca.pem\"\n", "use https://"),
        ] {
            let e = parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.contains("/c.toml") && e.contains(named), "{extra}: {e}");
        }
        for (text, named) in [
            ("[team]\nendpoints = []\nfarm = \"lab\"\n", "endpoints"),
            (
                "[team]\nendpoints = [\"https://e:2379\"]\nfarm = \"l\"\n",
                "set ca",
            ),
            (
                "[team]\nendpoints = [\"https://e\"]\nfarm = \"l\"\nca = \"c.pem\"\n",
                "ca = \"c.pem\": use an absolute path",
            ),
            (
                "[team]\nendpoints = [\"https://e\"]\nfarm = \"l\"\nca = \"/c\"\ncert = \"/d\"\n",
                "cert and key go together",
            ),
            (
                "[team]\nendpoints = [\"e:2379\"]\nfarm = \"l\"\n",
                "http://",
            ),
            (
                "[team]\nendpoints = [\"http://e\"]\nfarm = \"a/b\"\n",
                "farm",
            ),
            ("[team]\nendpoints = [\"http://e\"]\nfarm = \"\"\n", "farm"),
            ("[team]\nfarm = \"lab\"\n", "endpoints"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(named), "{text}: {e}");
        }
    }

    #[test]
    fn the_password_file_must_be_private_and_the_password_is_never_shown() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let text = format!(
            "[team]\nendpoints = [\"http://e\"]\nfarm = \"l\"\nuser = \"ann\"\n\
             password_file = \"{}\"\n",
            file.display()
        );
        let config = dir.path().join("config.toml");
        std::fs::write(&config, &text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Config::load(&config).unwrap_err().to_string();
        assert!(
            e.contains("config.toml") && e.contains("pw") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = Config::load(&config).unwrap().team.unwrap();
        assert_eq!(t.password, Some(super::Secret("s3cret".into())));
        assert!(!format!("{t:?}").contains("s3cret"));
        std::fs::remove_file(&file).unwrap();
        let e = Config::load(&config).unwrap_err().to_string();
        assert!(
            e.contains("password_file") && e.contains("No such file"),
            "{e}"
        );
    }
}
