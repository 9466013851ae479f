//! The simulated farm host: a distccd on 127.0.0.1 whose compiler is a
//! small wrapper that reads the job's declared work (`tcpb_work_ms` in the
//! source), sleeps work ÷ the host's speed, then really compiles; and the
//! job sets written as C files with a Makefile.

use std::path::{Path, PathBuf};

/// One simulated farm host; its distccd stops when dropped.
pub struct Host {
    pub speed: f64,
    pub slots: u32,
    pub port: u16,
    pub log: PathBuf,
    _daemon: super::Guard,
}

pub fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Writes compiler wrappers (`gcc`, `cc`, `x86_64-linux-gnu-gcc`) into
/// `bin` that sleep a job's declared work ÷ `speed` when they compile a
/// file matching `pattern` (a shell `case` pattern), then run gcc.
fn write_wrappers(bin: &Path, pattern: &str, speed: f64) {
    std::fs::create_dir_all(bin).unwrap();
    chmod(bin, 0o755);
    let real = which::which("x86_64-linux-gnu-gcc").expect("gcc");
    let script = format!(
        "#!/bin/sh\nf=\nfor a in \"$@\"; do case \"$a\" in -E) exec {real} \"$@\";; {pattern}) f=\"$a\";; esac; done\n\
         if [ -n \"$f\" ]; then\n  w=$(sed -n 's/.*tcpb_work_ms = \\([0-9]*\\).*/\\1/p' \"$f\" | head -n 1)\n  \
         [ -n \"$w\" ] && sleep $(awk \"BEGIN {{ print $w / 1000 / {speed} }}\")\nfi\nexec {real} \"$@\"\n",
        real = real.display()
    );
    for name in ["x86_64-linux-gnu-gcc", "gcc", "cc"] {
        std::fs::write(bin.join(name), &script).unwrap();
        chmod(&bin.join(name), 0o755);
    }
}

/// A directory to put first on `PATH` so that compiles run on this machine
/// take declared work ÷ `speed` (preprocessing alone runs at once): the
/// local machine counted like a farm host.
pub fn local_compiler(root: &Path, speed: f64) -> PathBuf {
    let bin = root.join("local-bin");
    write_wrappers(&bin, "*.c", speed);
    bin
}

/// Starts a distccd whose compiles take declared work ÷ `speed`.
pub fn start_host(root: &Path, idx: usize, speed: f64, slots: u32) -> Host {
    let bin = root.join(format!("host{idx}-bin"));
    write_wrappers(&bin, "*.i", speed);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = root.join(format!("host{idx}.log"));
    let (daemon, port) = super::distccd(&log, slots, Some(&path));
    Host {
        speed,
        slots,
        port,
        log,
        _daemon: daemon,
    }
}

/// Writes a job set as C files and a Makefile. Returns the work of each
/// job in ms.
pub fn write_job_set(dir: &Path, set: Vec<(u64, u64)>) -> Vec<u64> {
    std::fs::create_dir_all(dir).unwrap();
    let mut works = Vec::new();
    let mut objs = Vec::new();
    for (i, (w, size)) in set.into_iter().enumerate() {
        works.push(w);
        let pad = "x".repeat(size as usize);
        let src = format!(
            "static const int tcpb_work_ms = {w};\nconst char job{i}_pad[] = \"{pad}\";\n\
             int job{i}(int v) {{ return v * {i} + tcpb_work_ms; }}\n"
        );
        std::fs::write(dir.join(format!("j{i}.c")), src).unwrap();
        objs.push(format!("j{i}.o"));
    }
    let mk = format!(
        "OBJS := {}\nall: $(OBJS)\n%.o: %.c\n\t$(CC) -c $< -o $@\nclean:\n\trm -f $(OBJS)\n",
        objs.join(" ")
    );
    std::fs::write(dir.join("Makefile"), mk).unwrap();
    works
}

/// Compiles the hosts have finished so far (their distccd logs).
pub fn farm_jobs(hosts: &[Host]) -> usize {
    let log = |h: &Host| std::fs::read_to_string(&h.log).unwrap_or_default();
    hosts
        .iter()
        .map(|h| log(h).matches("COMPILE_OK").count())
        .sum()
}

/// The object files in `dir`.
pub fn objects_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "o"))
        })
        .count()
}
