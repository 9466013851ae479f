//! A fault schedule: a build of 40 files against three real distccd while a
//! seeded random schedule kills, stops and restarts hosts, kills the
//! broker, floods the relay ports and the control socket from another user,
//! and changes the farm with `tcpb host`. Afterwards every object is
//! identical to a local build, nothing is left busy or queued, the broker
//! answers and its log is intact.
//!
//! `TCPB_FAULT_SEEDS=1,2,3` (the default) runs those seeds; by hand, e.g.
//! `TCPB_FAULT_SEEDS=1-50 cargo test --test faults -- --nocapture`.

mod common;
use common::*;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n.max(1)
    }
}

/// The three hosts; a killed one is `None` until restarted on its port.
struct Farm {
    hosts: Vec<Option<Distccd>>,
    ports: Vec<u16>,
    stopped: Vec<bool>,
}

impl Farm {
    fn list(&self) -> String {
        let v: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}/2"))
            .collect();
        v.join(" ")
    }

    /// Lets every host run again and restarts the killed ones.
    fn heal(&mut self, env: &TestEnv) {
        for i in 0..self.hosts.len() {
            if let Some(d) = &self.hosts[i] {
                d.resume();
            } else {
                self.hosts[i] = restart(env, self.ports[i]);
            }
            self.stopped[i] = false;
        }
    }
}

fn restart(env: &TestEnv, port: u16) -> Option<Distccd> {
    (0..20).find_map(|_| {
        Distccd::start_on(env, port, 2).or_else(|| {
            std::thread::sleep(Duration::from_millis(100));
            None
        })
    })
}

/// Listening TCP ports on 127.0.0.1 owned by this uid: the relay's.
fn own_listening_ports() -> Vec<u16> {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, state, uid) = (f.get(1)?, f.get(3)?, f.get(7)?);
            let (ip, port) = local.split_once(':')?;
            let listening = *state == "0A" && ip == "0100007F";
            (listening && uid.parse::<u32>().ok()? == me)
                .then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// `nobody` connects to each of `ports` and to the control socket, in the
/// background (bounded: 5 s).
fn flood(env: &TestEnv, ports: &[u16]) -> Option<Child> {
    let mut script = String::from("end=$((SECONDS+5)); while [ $SECONDS -lt $end ]; do ");
    for p in ports.iter().take(16) {
        script += &format!("(exec 3<>/dev/tcp/127.0.0.1/{p}) 2>/dev/null; ");
    }
    script += &format!(
        "{} status >/dev/null 2>&1; done",
        env!("CARGO_BIN_EXE_tcpb")
    );
    let mut cmd = env.cmd("runuser");
    cmd.args(["-u", "nobody", "--", "timeout", "10", "bash", "-c", &script])
        .env("TCPB_RUNTIME_DIR", env.runtime_dir());
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd.spawn().ok()
}

/// One fault, chosen by `rng`; returns what it did, for the record.
fn fault(
    env: &TestEnv,
    farm: &mut Farm,
    rng: &mut Rng,
    hostile: bool,
    floods: &mut Vec<Child>,
) -> String {
    let i = rng.below(3) as usize;
    let name = format!("127.0.0.1:{}", farm.ports[i]);
    let host = |verb: &str| {
        let out = env
            .tcpb()
            .args(["host", verb, &name])
            .env("DISTCC_HOSTS", farm.list())
            .output();
        format!(
            "host {verb} {name}: {}",
            out.is_ok_and(|o| o.status.success())
        )
    };
    match rng.below(8) {
        0 => match farm.hosts[i].take() {
            Some(mut d) => {
                d.kill();
                format!("kill {name}")
            }
            None => {
                farm.hosts[i] = restart(env, farm.ports[i]);
                format!("restart {name}")
            }
        },
        1 => match &farm.hosts[i] {
            Some(d) if !farm.stopped[i] => {
                d.stop();
                farm.stopped[i] = true;
                format!("stop {name}")
            }
            Some(d) => {
                d.resume();
                farm.stopped[i] = false;
                format!("resume {name}")
            }
            None => "nothing".into(),
        },
        2 => kill_broker(env),
        3 if hostile => {
            floods.extend(flood(env, &own_listening_ports()));
            "flood".into()
        }
        4 => host("drain"),
        5 => host("disable"),
        6 => host("enable"),
        _ => {
            let out = env
                .tcpb()
                .args([
                    "host",
                    "set",
                    &name,
                    "--slots",
                    &(1 + rng.below(3)).to_string(),
                ])
                .env("DISTCC_HOSTS", farm.list())
                .output();
            format!("host set {name}: {}", out.is_ok_and(|o| o.status.success()))
        }
    }
}

fn kill_broker(env: &TestEnv) -> String {
    let out = env.tcpb().args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    match v["broker"]["pid"].as_u64() {
        Some(pid) => {
            // SAFETY: the broker this test's compiles started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            format!("kill broker {pid}")
        }
        None => "no broker to kill".into(),
    }
}

fn run_seed(seed: u64, reference: &Path, hostile: bool) {
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 120\njob_timeout_s = 6\n[health]\nhang_hold_s = 2\n");
    let started: Vec<Distccd> = (0..3).map(|_| Distccd::start(&env, 2)).collect();
    let ports = started.iter().map(|d| d.port).collect();
    let mut farm = Farm {
        hosts: started.into_iter().map(Some).collect(),
        ports,
        stopped: vec![false; 3],
    };
    let dir = env.path("build");
    let objs = heavy_project(&dir, 40);
    let build = spawn_build(&env, &dir, &farm.list());
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (mut done, mut floods) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(40);
    while !build.is_finished() && Instant::now() < deadline && done.len() < 60 {
        std::thread::sleep(Duration::from_millis(200 + rng.below(500)));
        done.push(fault(&env, &mut farm, &mut rng, hostile, &mut floods));
    }
    farm.heal(&env);
    let out = build.join().unwrap();
    for mut f in floods {
        let _ = f.kill();
        let _ = f.wait();
    }
    let record = done.join("; ");
    assert!(
        out.status.success(),
        "seed {seed}: {record}\n{}",
        output_text(&out)
    );
    assert_objects_match(&objs, reference, &dir);
    let s = env.wait_status(&farm.list(), Duration::from_secs(20), |s| {
        let idle = |h: &serde_json::Value| h["busy"] == 0;
        s["running"] == 0
            && s["queued"] == 0
            && s["hosts"].as_array().is_some_and(|v| v.iter().all(idle))
    });
    let log = env.log();
    assert!(
        log.contains("broker started") && !log.contains("panicked"),
        "seed {seed}:\n{log}"
    );
    eprintln!(
        "RESULT faults seed {seed}: {} faults, {} fell back, {} brokers: {record}",
        done.len(),
        s["fell_back"],
        env.brokers_started()
    );
}

fn seeds() -> Vec<u64> {
    let spec = std::env::var("TCPB_FAULT_SEEDS").unwrap_or_else(|_| "1,2,3".into());
    spec.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => {
                (a.trim().parse().unwrap_or(1)..=b.trim().parse().unwrap_or(1)).collect()
            }
            None => part.trim().parse().ok().into_iter().collect::<Vec<u64>>(),
        })
        .collect()
}

#[test]
fn a_build_survives_a_seeded_fault_schedule() {
    if !have_distccd() {
        return;
    }
    let hostile = can_switch_user();
    let reference = tempfile::tempdir().unwrap();
    let project = reference.path().join("src");
    let objs = heavy_project(&project, 40);
    reference_objects(&project, &reference.path().join("ref"));
    assert_eq!(objs.len(), 40);
    for seed in seeds() {
        run_seed(seed, &reference.path().join("ref"), hostile);
    }
}
