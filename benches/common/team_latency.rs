//! The latency team mode adds per compile: the same compiles, one after
//! another on an idle farm, through a broker alone and a broker in a team
//! (etcd on loopback). A compile that reuses a held claim makes no call
//! to etcd.

use super::common::{SharedFarm, TCPB, env, percentiles};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `n` compiles through each broker and prints p50 and p99.
pub fn measure(root: &Path, farm: &SharedFarm, url: &str, n: usize) {
    let team = format!("[team]\nendpoints = [\"{url}\"]\nfarm = \"latency\"\n");
    let alone = timings(root, farm, "alone", "", n);
    let teamed = timings(root, farm, "team", &team, n);
    let (a, t) = (percentiles(alone), percentiles(teamed));
    println!("\nper compile, {n} one after another (a zero-work file; µs):");
    println!("  {:<8} {:>9} {:>9}", "broker", "p50", "p99");
    println!("  {:<8} {:>9.0} {:>9.0}", "alone", a[0], a[2]);
    println!("  {:<8} {:>9.0} {:>9.0}", "team", t[0], t[2]);
    println!("  {:<8} {:>9.0} {:>9.0}", "added", t[0] - a[0], t[2] - a[2]);
}

/// Wall time of each of `n` compiles through a broker with `config`.
fn timings(root: &Path, farm: &SharedFarm, name: &str, config: &str, n: usize) -> Vec<Duration> {
    let dir = root.join(format!("latency-{name}"));
    for d in ["run", "state", "distcc", "w"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(
        dir.join("config.toml"),
        format!("[broker]\nidle_exit_s = 600\n{config}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("w/z.c"),
        "static const int tcpb_work_ms = 0;\nint z(void) { return tcpb_work_ms; }\n",
    )
    .unwrap();
    let compile = || {
        let mut cmd = Command::new(TCPB);
        cmd.args(["gcc", "-c", "z.c", "-o", "z.o"])
            .current_dir(dir.join("w"));
        env(&mut cmd, &dir);
        cmd.env("DISTCC_DIR", dir.join("distcc"))
            .env("DISTCC_HOSTS", farm.hosts_line());
        let start = Instant::now();
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        start.elapsed()
    };
    // The broker starts, learns the farm and (in a team) claims a slot.
    for _ in 0..10 {
        compile();
    }
    let times = (0..n).map(|_| compile()).collect();
    let mut stop = Command::new(TCPB);
    stop.arg("stop");
    env(&mut stop, &dir);
    let _ = stop.output();
    times
}
