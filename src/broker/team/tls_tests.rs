//! TLS to a real etcd (`--client-cert-auth`), with certificates made by
//! `openssl` for the test.

use super::*;
use crate::broker::team::etcd::Etcd;
use crate::broker::team::etcd::tests::start_etcd_at;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A CA, a certificate for etcd at 127.0.0.1 signed by it, one for a
/// client, and a CA etcd does not know: `NAME.pem` and `NAME.key` in
/// `dir`. None (said loudly) without openssl outside CI.
fn certificates(dir: &Path) -> Option<()> {
    if which::which("openssl").is_err() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "openssl not installed, and CI=true: .ci/run must install it"
        );
        eprintln!("\n!!!!!!!!!! SKIPPED: openssl not installed !!!!!!!!!!\n");
        return None;
    }
    for ca in ["ca", "other-ca"] {
        let (pem, k, subj) = (
            format!("{ca}.pem"),
            format!("{ca}.key"),
            format!("/CN=tcpb test {ca}"),
        );
        let out = ["-keyout", &k, "-out", &pem, "-days", "2", "-subj", &subj];
        openssl(dir, &[&["req", "-x509"], &KEY[..], &out[..]].concat());
    }
    let server = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n";
    signed(dir, "etcd", server);
    signed(dir, "client", "extendedKeyUsage=clientAuth\n");
    Some(())
}

/// A new key of the kind every certificate here has.
const KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// `NAME.pem` and `NAME.key`: a certificate for 127.0.0.1 with extensions
/// `ext`, signed by `ca.pem`.
fn signed(dir: &Path, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    let (pem, k, csr, ext) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    let out = ["-keyout", &k, "-out", &csr, "-subj", "/CN=127.0.0.1"];
    openssl(dir, &[&["req"], &KEY[..], &out[..]].concat());
    let sign = [
        "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
    ];
    let out = [
        "-CAcreateserial",
        "-out",
        &pem,
        "-days",
        "2",
        "-extfile",
        &ext,
    ];
    openssl(dir, &[&sign[..], &out[..]].concat());
}

/// Runs `openssl ARGS` in `dir`; it must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn at(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[tokio::test]
async fn calls_and_watches_go_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let Some(()) = certificates(dir.path()) else {
        return;
    };
    let d = dir.path();
    let (cert, key, ca) = (at(d, "etcd.pem"), at(d, "etcd.key"), at(d, "ca.pem"));
    let args = [
        "--cert-file",
        &cert,
        "--key-file",
        &key,
        "--trusted-ca-file",
        &ca,
    ];
    let Some(e) = start_etcd_at("https", &[&args[..], &["--client-cert-auth"]].concat()) else {
        return;
    };
    let urls = [e.url.clone()];
    let client = Some((at(d, "client.pem"), at(d, "client.key")));
    let tls = |ca: &str, client: &Option<(String, String)>| {
        let client = client.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
        let tls = Tls::load(&at(d, ca), client).unwrap();
        Etcd::new(&urls, Duration::from_secs(2))
            .unwrap()
            .with_tls(tls)
    };
    let etcd = tls("ca.pem", &client);
    let lease = etcd.grant(10).await.unwrap();
    let mut w = etcd.watch("/tcpb/t/", 0).await.unwrap();
    assert!(etcd.create("/tcpb/t/taken/h/0", "me", lease).await.unwrap());
    let seen = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen[0].key, "/tcpb/t/taken/h/0");
    // Without a client certificate etcd refuses; with a CA that did not
    // sign etcd's certificate, tcpb does; without TLS set up, it says so.
    let e1 = tls("ca.pem", &None)
        .grant(10)
        .await
        .unwrap_err()
        .to_string();
    let e2 = tls("other-ca.pem", &client)
        .grant(10)
        .await
        .unwrap_err()
        .to_string();
    let plain = Etcd::new(&urls, Duration::from_secs(2)).unwrap();
    let e3 = plain.grant(10).await.unwrap_err().to_string();
    assert!(
        e1.contains("127.0.0.1") && e1.contains("BadCertificate"),
        "{e1}"
    );
    assert!(
        e2.contains("TLS with 127.0.0.1") && e2.contains("UnknownIssuer"),
        "{e2}"
    );
    assert!(e3.contains("[team] ca"), "{e3}");
}

#[test]
fn files_are_checked_where_the_config_is_read() {
    use crate::config::TeamConfig;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let Some(()) = certificates(dir.path()) else {
        return;
    };
    let d = dir.path();
    let mut t = TeamConfig::new(&["https://127.0.0.1:1".to_string()], "f");
    (t.ca, t.cert, t.key) = (
        Some(at(d, "ca.pem")),
        Some(at(d, "client.pem")),
        Some(at(d, "client.key")),
    );
    std::fs::set_permissions(d.join("client.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = t.read_tls().unwrap_err();
    assert!(e.contains("client.key") && e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(d.join("client.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    t.read_tls().unwrap();
    assert!(t.tls.is_some() && format!("{t:?}").contains("Tls(..)"));
    t.ca = Some(at(d, "client.ext"));
    let e = t.read_tls().unwrap_err();
    assert!(
        e.contains("client.ext") && e.contains("no PEM certificate"),
        "{e}"
    );
    t.ca = Some(at(d, "missing.pem"));
    assert!(t.read_tls().unwrap_err().contains("missing.pem"));
}
