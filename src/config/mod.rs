//! The optional `config.toml`: per-host speed and slots, extra hosts, and
//! broker options. Unknown keys are errors that carry a line number.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

mod team;
pub use team::{Offline, Secret, TeamConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Broker options.
    #[serde(default)]
    pub broker: BrokerConfig,
    /// Host probes and failure thresholds.
    #[serde(default)]
    pub health: HealthConfig,
    /// Per-host settings. A host named here that the distcc host list does
    /// not have is added to the farm.
    #[serde(default, rename = "host")]
    pub hosts: Vec<HostConfig>,
    /// The optional HTTP endpoint.
    #[serde(default)]
    pub http: HttpConfig,
    /// Team mode: the farm's slots shared with other workstations through
    /// etcd. None: this broker is on its own.
    #[serde(default)]
    pub team: Option<TeamConfig>,
}

/// Probe and threshold settings (`[health]` in config.toml).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Milliseconds between probes of a host under suspicion (the relay saw
    /// it fail, or a probe did), and the first step of a down host's
    /// growing interval.
    pub interval_ms: u64,
    /// Milliseconds between probes of an up host that no compile reached
    /// meanwhile: its own traffic is its health evidence.
    pub idle_interval_ms: u64,
    /// Milliseconds a probe's connect may take.
    pub timeout_ms: u64,
    /// Consecutive failures that make a host down.
    pub fall: u32,
    /// Consecutive successes that bring it back up.
    pub rise: u32,
    /// Cap, in milliseconds, of the growing probe interval of a down host.
    pub max_interval_ms: u64,
    /// Seconds a host that hung (accepted, never answered) stays down.
    pub hang_hold_s: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: 2000,
            idle_interval_ms: 60_000,
            timeout_ms: 1000,
            fall: 3,
            rise: 2,
            max_interval_ms: 30_000,
            hang_hold_s: 60,
        }
    }
}

impl HealthConfig {
    /// The probe interval of a healthy host.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(1))
    }

    /// The probe interval of an up host no compile reached.
    pub(crate) fn idle_interval(&self) -> Duration {
        Duration::from_millis(self.idle_interval_ms.max(self.interval_ms).max(1))
    }
}

/// `[http]`: `/status` (JSON) and `/metrics` (Prometheus), off by default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HttpConfig {
    /// `ADDR:PORT` to serve on, e.g. `127.0.0.1:9464`; none: no endpoint.
    pub listen: Option<std::net::SocketAddr>,
    /// Must be true to listen on an address other than loopback: anyone
    /// who can reach it reads the farm's status.
    pub public: bool,
}

/// `[broker]` options.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BrokerConfig {
    /// Seconds with no lease and no queued compile before the broker exits.
    pub idle_exit_s: u64,
    /// Milliseconds allowed for the relay's connect to a farm host.
    pub connect_timeout_ms: u64,
    /// Seconds a relayed job may pass no byte either way before it is cut
    /// and the host counted as hung (well above distcc's 300 s IO timeout).
    pub job_timeout_s: u64,
    /// Seconds a queued compile waits before it runs locally; 0: no limit.
    pub queue_timeout_s: u64,
    /// Seconds a new control connection may take to send its request.
    pub client_timeout_s: u64,
    /// Seconds a stopping broker waits for leases still running.
    pub shutdown_grace_s: u64,
    /// The broker log (`broker.log`) is set aside as `broker.log.old` and
    /// started anew past this many KiB.
    pub log_max_kib: u64,
    /// Compiles that may wait in the queue; one more compiles locally, with
    /// a warning, instead of waiting.
    pub max_queue: usize,
    /// Compiles connected at once, waiting or running (each holds a control
    /// connection); one more compiles locally, with a warning. Status and
    /// admin requests do not count.
    pub max_connections: usize,
    /// Seconds a host list no compile is using stays known; then it, and
    /// the hosts no other list names, leave the farm.
    pub list_idle_s: u64,
    /// When no farm host of a compile's list has a free slot, a
    /// distributable compile may run on this machine's idle CPUs if it
    /// would finish sooner there (`sched::overflow`).
    pub local_overflow: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            idle_exit_s: 30 * 60,
            connect_timeout_ms: 2000,
            job_timeout_s: 900,
            queue_timeout_s: 0,
            client_timeout_s: 10,
            shutdown_grace_s: 10,
            log_max_kib: 4096,
            max_queue: 10_000,
            max_connections: 16_384,
            list_idle_s: 600,
            // On: in the overflow benchmark no build was slower with it,
            // and 2-6% faster where the farm was full (BENCHMARKS.md).
            local_overflow: true,
        }
    }
}

/// One `[[host]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostConfig {
    /// `HOST[:PORT]` or `localhost`, matched against the host list.
    pub name: String,
    /// Relative speed (default 1.0).
    pub speed: Option<f64>,
    /// Slots, overriding the host list's limit.
    pub slots: Option<u32>,
    /// Compress with LZO (only for hosts the config adds).
    #[serde(default)]
    pub lzo: bool,
    /// Pump mode (only for hosts the config adds).
    #[serde(default)]
    pub cpp: bool,
}

/// A configuration file that cannot be used, with its path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys or bad values.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// toml's message, which names the line and column.
        message: String,
    },
}

impl Config {
    /// Reads `path`; a missing file is the default configuration.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut config = Config::parse(&text, &shown)?;
                if let Some(t) = config.team.as_mut() {
                    (t.read_password().and_then(|()| t.read_tls())).map_err(|message| {
                        ConfigError::Invalid {
                            path: shown.clone(),
                            message,
                        }
                    })?;
                }
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: shown,
                source,
            }),
        }
    }

    /// Parses the text of a configuration file named `path` in errors.
    pub(crate) fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_string(),
            message: one_line(text, &e),
        })?;
        let hc = &config.health;
        if hc.fall == 0 || hc.rise == 0 || hc.interval_ms == 0 || hc.timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                message: "[health] fall, rise, interval_ms and timeout_ms must be at least 1"
                    .to_string(),
            });
        }
        if let Some(addr) = config.http.listen
            && !addr.ip().is_loopback()
            && !config.http.public
        {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                message: format!(
                    "[http] listen = \"{addr}\" is not a loopback address: it would show the \
                     farm's status to anyone who can reach it; add public = true to mean it"
                ),
            });
        }
        config
            .check_bounds()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_string(),
                message,
            })?;
        for h in &config.hosts {
            let bad = |what: &str| ConfigError::Invalid {
                path: path.to_string(),
                message: format!("host \"{}\": {what}", h.name),
            };
            if let Some(s) = h.speed {
                crate::limits::speed(s).map_err(|e| bad(&e))?;
            }
            if let Some(n) = h.slots {
                crate::limits::slots(n).map_err(|e| bad(&e))?;
            }
            crate::hosts::parse(&h.name, path).map_err(|e| bad(&e.reason))?;
        }
        if let Some(t) = &config.team {
            t.check().map_err(|message| ConfigError::Invalid {
                path: path.to_string(),
                message,
            })?;
        }
        Ok(config)
    }

    /// Every count and time within `limits`, so no sum with an instant or
    /// a count can overflow.
    fn check_bounds(&self) -> Result<(), String> {
        use crate::limits::{MAX_COUNT, MAX_SECS, at_most};
        let (b, h) = (&self.broker, &self.health);
        let ms = MAX_SECS * 1000;
        let checks = [
            ("[broker] idle_exit_s", b.idle_exit_s, MAX_SECS),
            ("[broker] connect_timeout_ms", b.connect_timeout_ms, ms),
            ("[broker] job_timeout_s", b.job_timeout_s, MAX_SECS),
            ("[broker] queue_timeout_s", b.queue_timeout_s, MAX_SECS),
            ("[broker] client_timeout_s", b.client_timeout_s, MAX_SECS),
            ("[broker] shutdown_grace_s", b.shutdown_grace_s, MAX_SECS),
            ("[broker] list_idle_s", b.list_idle_s, MAX_SECS),
            ("[broker] log_max_kib", b.log_max_kib, 1 << 30),
            ("[broker] max_queue", b.max_queue as u64, MAX_COUNT),
            (
                "[broker] max_connections",
                b.max_connections as u64,
                MAX_COUNT,
            ),
            ("[health] interval_ms", h.interval_ms, ms),
            ("[health] idle_interval_ms", h.idle_interval_ms, ms),
            ("[health] timeout_ms", h.timeout_ms, ms),
            ("[health] max_interval_ms", h.max_interval_ms, ms),
            ("[health] hang_hold_s", h.hang_hold_s, MAX_SECS),
            ("[health] fall", u64::from(h.fall), 1000),
            ("[health] rise", u64::from(h.rise), 1000),
        ];
        checks
            .iter()
            .try_for_each(|(key, value, max)| at_most(key, *value, *max))?;
        if b.connect_timeout_ms == 0 {
            // Every connect would time out at once: no host would be used.
            return Err("[broker] connect_timeout_ms = 0: it must be at least 1".to_string());
        }
        Ok(())
    }
}

/// toml's error as one line: `line L, column C: message`.
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_their_limits_are_refused_with_key_and_limit() {
        let e = Config::parse(
            "[broker]\njob_timeout_s = 18446744073709551615\n",
            "/c.toml",
        );
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("/c.toml") && e.contains("job_timeout_s") && e.contains("604800"),
            "{e}"
        );
        let e = Config::parse("[broker]\nconnect_timeout_ms = 0\n", "/c.toml").unwrap_err();
        assert!(e.to_string().contains("connect_timeout_ms"), "{e}");
        let e = Config::parse("[[host]]\nname = \"b1\"\nslots = 5000\n", "/c.toml").unwrap_err();
        assert!(e.to_string().contains("1024"), "{e}");
        assert!(Config::parse("[broker]\nqueue_timeout_s = 604800\n", "/c.toml").is_ok());
    }

    #[test]
    fn http_is_off_by_default_and_loopback_unless_public() {
        assert_eq!(Config::parse("", "/c.toml").unwrap().http.listen, None);
        let c = Config::parse("[http]\nlisten = \"127.0.0.1:9464\"\n", "/c.toml").unwrap();
        assert_eq!(c.http.listen.unwrap().port(), 9464);
        let e = Config::parse("[http]\nlisten = \"0.0.0.0:9464\"\n", "/c.toml").unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("/c.toml") && e.contains("0.0.0.0:9464") && e.contains("public = true"),
            "{e}"
        );
        let c = Config::parse(
            "[http]\nlisten = \"0.0.0.0:9464\"\npublic = true\n",
            "/c.toml",
        );
        assert!(c.is_ok());
    }

    #[test]
    fn full_file() {
        let c = Config::parse(
            "[broker]\nidle_exit_s = 60\n[health]\nfall = 5\n\n[[host]]\nname = \"b1\"\nspeed = 2.5\nslots = 8\n\n\
             [[host]]\nname = \"localhost\"\nslots = 3\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.broker.idle_exit_s, 60);
        assert_eq!(c.broker.connect_timeout_ms, 2000);
        assert_eq!(c.hosts.len(), 2);
        assert_eq!((c.health.fall, c.health.rise), (5, 2));
        assert_eq!(c.hosts[0].speed, Some(2.5));
    }

    #[test]
    fn unknown_key_names_line() {
        let e = Config::parse("[broker]\nidle_exit_s = 5\nidle_exitt = 3\n", "/x/c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/x/c.toml:"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("idle_exitt"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn bad_values() {
        for text in [
            "[[host]]\nname = \"b\"\nspeed = 0.0\n",
            "[[host]]\nname = \"b\"\nslots = 0\n",
            "[[host]]\nname = \"b:notaport\"\n",
        ] {
            let e = Config::parse(text, "c.toml").unwrap_err().to_string();
            assert!(e.contains("host \"b"), "{e}");
        }
    }

    #[test]
    fn missing_file_is_default() {
        let c = Config::load(Path::new("/nonexistent/tcpb/config.toml")).unwrap();
        assert_eq!(c, Config::default());
    }
}
