//! The host-list grammar and lookup, against distcc's.

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
            ssh(Some("me"), "sshhost", None, 2),
        ]
    );
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert_eq!(l.entries[6].name(), "[fe80::1]:4000");
    assert_eq!(l.entries[6].to_string(), "[fe80::1]:4000/3,lzo,cpp");
}

fn ssh(user: Option<&str>, host: &str, command: Option<&str>, slots: u32) -> HostEntry {
    HostEntry::Ssh {
        ssh: SshHost {
            user: user.map(Into::into),
            host: host.into(),
            command: command.map(Into::into),
        },
        slots,
        lzo: false,
        cpp: false,
    }
}

#[test]
fn ssh_grammar_in_distccs_order() {
    let l = parse(
        "@h1 me@h2/3 @h3:/opt/bin/distccd me@h4/2:distccd-12,lzo,cpp",
        "DISTCC_HOSTS",
    )
    .unwrap();
    let mut e = l.entries.clone();
    if let HostEntry::Ssh { lzo, cpp, .. } = &mut e[3] {
        assert!(*lzo && *cpp);
        (*lzo, *cpp) = (false, false);
    }
    assert_eq!(
        e,
        vec![
            ssh(None, "h1", None, 4),
            ssh(Some("me"), "h2", None, 3),
            ssh(None, "h3", Some("/opt/bin/distccd"), 4),
            ssh(Some("me"), "h4", Some("distccd-12"), 2),
        ]
    );
    let names: Vec<String> = l.entries.iter().map(HostEntry::name).collect();
    assert_eq!(
        names,
        ["@h1", "me@h2", "@h3:/opt/bin/distccd", "me@h4:distccd-12"]
    );
    assert_eq!(l.entries[3].to_string(), "me@h4/2:distccd-12,lzo,cpp");
    // Each entry's text parses back to itself.
    for entry in &l.entries {
        let again = parse(&entry.to_string(), "DISTCC_HOSTS").unwrap();
        assert_eq!(&again.entries[0], entry);
    }
    for bad in [
        "me@",
        "@/2",
        "me@h/0",
        "me@h:",
        "me@h,gzip",
        "me@h/2x",
        "a@b@c",
    ] {
        let e = parse(bad, "DISTCC_HOSTS").unwrap_err();
        assert_eq!(e.entry, bad);
    }
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
