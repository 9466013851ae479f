//! Each compile goes only where its own host list says: builds with
//! different lists share one broker at the same time, and no compile
//! reaches a host its list does not name (counted at each real distccd,
//! whose log names every file it compiled).

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

/// Writes `n` small C files named `{prefix}{i}.c` and a Makefile for them;
/// returns the object names.
fn named_project(dir: &Path, prefix: &str, n: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut objs = Vec::new();
    for i in 0..n {
        let src = format!(
            "int {prefix}{i}(int x) {{ int s = 0; for (int k = 0; k < x; k++) s += k * {i}; return s; }}\n"
        );
        std::fs::write(dir.join(format!("{prefix}{i}.c")), src).unwrap();
        objs.push(format!("{prefix}{i}.o"));
    }
    write_makefile(dir, &objs);
    objs
}

/// The file-name prefixes of the compiles `d` finished.
fn prefixes(d: &Distccd) -> Vec<String> {
    d.log()
        .lines()
        .filter(|l| l.contains("COMPILE_OK"))
        .filter_map(|l| l.split_whitespace().last()?.strip_suffix(".c"))
        .map(|f| f.trim_end_matches(|c: char| c.is_ascii_digit()).to_string())
        .collect()
}

#[test]
fn concurrent_builds_use_only_the_hosts_of_their_own_lists() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let hosts = [1, 2, 3].map(|_| Distccd::start(&env, 4));
    let [h1, h2, h3] = &hosts;
    let n = 10;
    // Disjoint (a: h1; b: h2) and overlapping (b: h2; c: h2 and h3); c
    // reads its list from a hosts file, the others from DISTCC_HOSTS.
    let builds = [
        ("a", Some(h1.host(2))),
        ("b", Some(h2.host(2))),
        ("c", None),
    ];
    let dccdir = env.path("dccdir");
    std::fs::create_dir_all(&dccdir).unwrap();
    let file_list = format!("{} {}\n", h2.host(2), h3.host(2));
    std::fs::write(dccdir.join("hosts"), file_list).unwrap();
    let mut running = Vec::new();
    for (prefix, list) in &builds {
        let dir = env.path(&format!("proj-{prefix}"));
        let objs = named_project(&dir, prefix, n);
        reference_objects(&dir, &env.path(&format!("ref-{prefix}")));
        let mut cmd = make_through_tcpb(&env, &dir, list.as_deref().unwrap_or(""));
        if list.is_none() {
            cmd.env_remove("DISTCC_HOSTS").env("DISTCC_DIR", &dccdir);
        }
        let handle = std::thread::spawn(move || output_within(cmd, Duration::from_secs(240)));
        running.push((prefix, dir, objs, handle));
    }
    for (prefix, dir, objs, handle) in running {
        let out = handle.join().unwrap();
        assert!(
            out.status.success(),
            "build {prefix}: {}",
            output_text(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("failed to distribute"),
            "build {prefix} fell back: {}",
            output_text(&out)
        );
        assert_objects_match(&objs, &env.path(&format!("ref-{prefix}")), &dir);
    }
    farm_compiles(&[h1, h2, h3], 3 * n);
    let allowed = [vec!["a"], vec!["b", "c"], vec!["c"]];
    for (h, ok) in hosts.iter().zip(&allowed) {
        for p in prefixes(h) {
            assert!(
                ok.contains(&p.as_str()),
                "{} compiled a file of build {p}, whose list does not name it",
                h.name()
            );
        }
    }
    let count = |h: &Distccd, p: &str| prefixes(h).iter().filter(|x| *x == p).count();
    assert_eq!(count(h1, "a"), n, "every compile of a on its only host");
    assert_eq!(count(h2, "b"), n, "every compile of b on its only host");
    assert_eq!(count(h2, "c") + count(h3, "c"), n, "c on its two hosts");
    let s = env.status("");
    let origins: Vec<&str> = s["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["origin"].as_str().unwrap())
        .collect();
    assert!(origins.contains(&"DISTCC_HOSTS"), "{origins:?}");
    assert!(
        origins.iter().any(|o| o.ends_with("dccdir/hosts")),
        "{origins:?}"
    );
    assert_eq!(s["lists"].as_array().unwrap().len(), 3, "{s}");
    let out = env.tcpb().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lists: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("lists"))
        .take(3)
        .collect();
    assert!(
        lists.len() == 3 && lists.iter().all(|l| l.contains("idle")),
        "{text}"
    );
    assert!(lists.iter().any(|l| l.contains(&h3.host(2))), "{text}");
}

#[test]
fn a_list_no_compile_uses_leaves_the_farm_and_its_host_keeps_its_counts() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 120\nlist_idle_s = 1\n");
    let (a, b) = (Distccd::start(&env, 2), Distccd::start(&env, 2));
    let dir = env.path("p");
    named_project(&dir, "x", 1);
    let compile = |hosts: &str, obj: &str| {
        let out = env
            .cmd(TCPB)
            .args(["gcc", "-O2", "-c", "x0.c", "-o", obj])
            .current_dir(&dir)
            .env("DISTCC_HOSTS", hosts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    };
    compile(&a.host(2), "1.o");
    compile(&b.host(3), "2.o");
    assert_eq!((a.compiles_ok(1), b.compiles_ok(1)), (1, 1));
    let names = |s: &serde_json::Value| -> Vec<String> {
        s["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap().to_string())
            .collect()
    };
    let both = env.status("");
    assert_eq!(names(&both), [a.name(), b.name(), "localhost".into()]);
    assert_eq!(host_of(&both, &b.name()).unwrap()["slots"], 3);
    // Both lists idle past list_idle_s: the next compile's list is the
    // only one left, and a's host has left the farm.
    std::thread::sleep(Duration::from_millis(1600));
    compile(&b.host(3), "3.o");
    let s = env.wait_status("", Duration::from_secs(5), |s| {
        s["lists"].as_array().is_some_and(|l| l.len() == 1)
    });
    assert_eq!(names(&s), [b.name(), "localhost".to_string()]);
    // Listed again, it comes back with what it had done.
    compile(&a.host(2), "4.o");
    let again = host_of(&env.status(""), &a.name()).unwrap();
    assert_eq!(again["jobs"], 2, "{again}");
    assert_eq!(env.brokers_started(), 1);
}
