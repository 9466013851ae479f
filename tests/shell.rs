//! `tcpb init` and `tcpb masquerade install` in real bash, zsh and fish:
//! the masquerade directory lands first on PATH once, CC/CXX are set on
//! request, and a plain `gcc -c` in that shell compiles through tcpb.
//! The scripts pass shellcheck (bash) and the shells' own syntax checks.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// Installs the masquerade directory, then runs `script` in `shell` with
/// tcpb's directory on PATH. Returns stdout.
fn in_shell(env: &TestEnv, shell: &str, script: &str) -> String {
    let masq = env.path("masq dir");
    let mut install = env.tcpb();
    install.args(["masquerade", "install"]).arg(&masq);
    let out = run_ok(install);
    assert!(out.contains("linked") && out.contains("/gcc"), "{out}");
    let bin = Path::new(TCPB).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut cmd = env.cmd(shell);
    let flags: &[&str] = match shell {
        "bash" => &["--norc", "--noprofile", "-c"],
        "zsh" => &["-f", "-c"],
        _ => &["--no-config", "-c"],
    };
    cmd.args(flags)
        .arg(script.replace("DIR", &masq.display().to_string()))
        .env("PATH", path);
    run_ok(cmd)
}

fn check_shell(shell: &str, script: &str) {
    if !have_tools(&[shell]) || !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    std::fs::write(env.path("work/x.c"), "int x(int a) { return a * 3; }\n").unwrap();
    let out = in_shell(&env, shell, script);
    let lines: Vec<&str> = out.lines().collect();
    let masq = env.path("masq dir").display().to_string();
    let path: Vec<&str> = lines[0].split(':').collect();
    assert_eq!(
        path[0], masq,
        "{shell}: the masquerade directory comes first"
    );
    assert_eq!(
        path.iter().filter(|p| **p == masq).count(),
        1,
        "{shell}: twice evaluated, once on PATH"
    );
    assert_eq!(lines[1], "tcpb gcc", "{shell}: CC");
    assert_eq!(lines[2], format!("{masq}/gcc"), "{shell}: gcc is the link");
    let st = Command::new("gcc")
        .args(["-c", "x.c", "-o", "want.o"])
        .current_dir(env.path("work"))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read(env.path("work/x.o")).unwrap(),
        std::fs::read(env.path("work/want.o")).unwrap()
    );
    assert_eq!(env.brokers_started(), 1, "{shell}: gcc went through tcpb");
    assert!(env.status("")["granted"].as_u64().unwrap() >= 1);
}

#[test]
fn bash_init_puts_the_masquerade_first_and_gcc_goes_through_tcpb() {
    check_shell(
        "bash",
        r#"eval "$(tcpb init bash --cc --dir 'DIR')"; eval "$(tcpb init bash --cc --dir 'DIR')"
           echo "$PATH"; echo "$CC"; command -v gcc; gcc -c x.c -o x.o"#,
    );
}

#[test]
fn zsh_init_puts_the_masquerade_first_and_gcc_goes_through_tcpb() {
    check_shell(
        "zsh",
        r#"eval "$(tcpb init zsh --cc --dir 'DIR')"; eval "$(tcpb init zsh --cc --dir 'DIR')"
           echo "$PATH"; echo "$CC"; command -v gcc; gcc -c x.c -o x.o"#,
    );
}

#[test]
fn fish_init_puts_the_masquerade_first_and_gcc_goes_through_tcpb() {
    check_shell(
        "fish",
        r#"tcpb init fish --cc --dir 'DIR' | source; tcpb init fish --cc --dir 'DIR' | source
           string join : $PATH; echo $CC; command -v gcc; gcc -c x.c -o x.o"#,
    );
}

#[test]
fn scripts_pass_shellcheck_and_the_shells_syntax_checks() {
    let shell_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shell");
    let env = TestEnv::new();
    for (shell, check) in [
        ("bash", vec!["-n"]),
        ("zsh", vec!["-n"]),
        ("fish", vec!["--no-execute"]),
    ] {
        if !have_tools(&[shell]) {
            continue;
        }
        for cc in ["", "--cc"] {
            let mut init = env.tcpb();
            init.args(["init", shell])
                .args((!cc.is_empty()).then_some(cc));
            let script = run_ok(init);
            assert!(!script.contains("__TCPB"), "{shell}: placeholders filled");
            let file = env.path(&format!("init.{shell}"));
            std::fs::write(&file, &script).unwrap();
            let mut c = Command::new(shell);
            c.args(&check).arg(&file);
            run_ok(c);
            if shell == "bash" && have_tools(&["shellcheck"]) {
                let mut sc = Command::new("shellcheck");
                sc.args(["-s", "bash"]).arg(&file);
                run_ok(sc);
            }
        }
    }
    if have_tools(&["shellcheck"]) {
        let mut sc = Command::new("shellcheck");
        sc.args(["-s", "bash"]).arg(shell_dir.join("tcpb.bash"));
        run_ok(sc);
    }
}

#[test]
fn masquerade_uninstall_removes_only_the_links_to_tcpb() {
    let env = TestEnv::new();
    let masq = env.path("masq");
    let mut install = env.tcpb();
    install.args(["masquerade", "install"]).arg(&masq);
    run_ok(install);
    let links = std::fs::read_dir(&masq).unwrap().count();
    assert!(links > 0);
    // Something of the user's own beside the links stays, and so does DIR.
    std::fs::write(masq.join("notes.txt"), "mine\n").unwrap();
    let mut uninstall = env.tcpb();
    uninstall.args(["masquerade", "uninstall"]).arg(&masq);
    let out = run_ok(uninstall);
    assert_eq!(out.matches("removed").count(), links, "{out}");
    assert!(out.contains("kept") && out.contains("notes.txt"), "{out}");
    let left: Vec<_> = std::fs::read_dir(&masq)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    // Without it the directory goes too.
    std::fs::remove_file(masq.join("notes.txt")).unwrap();
    let mut again = env.tcpb();
    again.args(["masquerade", "install"]).arg(&masq);
    run_ok(again);
    let mut uninstall = env.tcpb();
    uninstall.args(["masquerade", "uninstall"]).arg(&masq);
    run_ok(uninstall);
    assert!(!masq.exists(), "the emptied directory is removed");
}
