//! The gateway client against a real etcd (Debian's `etcd-server`) on
//! loopback ports chosen at run time.

use super::*;
use std::process::{Child, Command, Stdio};

/// A private etcd; killed and its data removed when dropped.
pub(crate) struct TestEtcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl TestEtcd {
    /// Stops etcd (SIGSTOP): it answers nothing, its connections stay open.
    pub(crate) fn stop(&self) {
        // SAFETY: signalling the etcd this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    /// Lets a stopped etcd run again.
    pub(crate) fn resume(&self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts etcd, or `None` (loudly) when it is not installed outside CI.
pub(crate) fn start_etcd() -> Option<TestEtcd> {
    start_etcd_with(&[])
}

/// Starts etcd with `extra` arguments, as `start_etcd`.
pub(crate) fn start_etcd_with(extra: &[&str]) -> Option<TestEtcd> {
    start_etcd_at("http", extra)
}

/// Starts etcd serving clients at `scheme`://127.0.0.1:PORT.
pub(crate) fn start_etcd_at(scheme: &str, extra: &[&str]) -> Option<TestEtcd> {
    if which::which("etcd").is_err() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("etcd not installed, and CI=true: .ci/run must install etcd-server");
        }
        eprintln!(
            "\n!!!!!!!!!! SKIPPED: etcd not installed (apt-get install etcd-server) !!!!!!!!!!\n"
        );
        return None;
    }
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .arg("--initial-cluster")
            .arg(format!("default={peer_url}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd");
        let mut e = TestEtcd {
            child,
            url,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", client)).is_ok() {
                return Some(e);
            }
            if e.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(e);
    }
    panic!("etcd did not start");
}

pub(crate) fn client(e: &TestEtcd) -> Etcd {
    Etcd::new(std::slice::from_ref(&e.url), Duration::from_secs(5)).unwrap()
}

/// A lease from `c`, once the gateway answers (it may take a moment after
/// the port opens).
pub(crate) async fn first_lease(c: &Etcd, ttl: u64) -> i64 {
    for _ in 0..50 {
        if let Ok(l) = c.grant(ttl).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("etcd's gateway never answered");
}

#[tokio::test]
async fn a_slot_key_is_created_once_and_goes_with_its_lease() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let mine = first_lease(&c, 10).await;
    let theirs = c.grant(10).await.unwrap();
    let key = "/tcpb/f/taken/b1:3632/0";
    assert!(c.create(key, "me", mine).await.unwrap(), "free: created");
    assert!(
        !c.create(key, "them", theirs).await.unwrap(),
        "held: not created"
    );
    let (rev, kvs) = c.range("/tcpb/f/taken/", 0).await.unwrap();
    assert!(rev > 0);
    assert_eq!(kvs, [(key.to_string(), "me".to_string())]);
    assert!(c.keep_alive(mine).await.unwrap() > 0);
    c.revoke(mine).await.unwrap();
    assert!(
        c.range("/tcpb/f/taken/", 0).await.unwrap().1.is_empty(),
        "gone with the lease"
    );
    assert!(c.create(key, "them", theirs).await.unwrap(), "free again");
    // A delete by a broker whose lease it is not leaves it: the key of a
    // claim whose release went unanswered may be someone else's by now.
    let (moves, keys) = ("/tcpb/f/moves/me", [key.to_string()]);
    let other = c.grant(10).await.unwrap();
    c.delete_own(&keys, other, (moves, "{}")).await.unwrap();
    let (_, kvs) = c.range("/tcpb/f/taken/", 0).await.unwrap();
    assert_eq!(kvs, [(key.to_string(), "them".to_string())]);
    assert_eq!(c.range(moves, 0).await.unwrap().1.len(), 1, "set with it");
    c.delete_own(&keys, theirs, (moves, "{}")).await.unwrap();
    assert!(c.range("/tcpb/f/taken/", 0).await.unwrap().1.is_empty());
    c.revoke(theirs).await.unwrap();
    assert!(c.range("/tcpb/f/", 0).await.unwrap().1.is_empty());
    assert_eq!(
        c.keep_alive(mine).await.unwrap_or(0),
        0,
        "a revoked lease is not alive"
    );
}

#[tokio::test]
async fn an_unreachable_member_and_a_bad_url_are_named() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let c = Etcd::new(std::slice::from_ref(&dead), Duration::from_millis(500)).unwrap();
    let e = c.grant(10).await.unwrap_err().to_string();
    assert!(e.contains("127.0.0.1"), "{e}");
    for bad in ["h:2379", "http://h/x", "http://", "https://"] {
        let e = Etcd::new(&[bad.to_string()], Duration::from_secs(1)).unwrap_err();
        assert!(e.contains(bad), "{e}");
    }
    let mixed = ["http://a".to_string(), "https://b".to_string()];
    let e = Etcd::new(&mixed, Duration::from_secs(1)).unwrap_err();
    assert!(e.contains("mix http:// and https://"), "{e}");
    use crate::broker::team::gateway::endpoint;
    assert_eq!(endpoint("http://h").unwrap(), ("h:2379".to_string(), false));
    assert_eq!(endpoint("https://h:1/").unwrap(), ("h:1".to_string(), true));
    assert_eq!(
        endpoint("https://[::1]").unwrap(),
        ("[::1]:2379".to_string(), true)
    );
    assert_eq!(prefix_end("/a/"), b"/a0");
}

#[tokio::test]
async fn a_watch_sees_claims_come_and_go_in_order() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let mut w = c.watch("/tcpb/f/taken/", 0).await.unwrap();
    assert!(
        c.create("/tcpb/f/taken/b1:3632/0", "me", lease)
            .await
            .unwrap()
    );
    assert!(
        c.create("/tcpb/f/other", "not watched", lease)
            .await
            .unwrap()
    );
    c.revoke(lease).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
        seen.extend(next.expect("a change within 5 s").unwrap());
    }
    let got: Vec<(&str, Option<&str>)> = seen
        .iter()
        .map(|c| (c.key.as_str(), c.value.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("/tcpb/f/taken/b1:3632/0", Some("me")),
            ("/tcpb/f/taken/b1:3632/0", None)
        ]
    );
    assert!(seen[0].revision < seen[1].revision);
}

#[tokio::test]
async fn calls_reuse_their_connections_and_survive_a_stop() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    for n in 0..50 {
        c.put(&format!("/tcpb/f/k{n}"), "v", lease).await.unwrap();
    }
    assert_eq!(
        c.connections(),
        1,
        "one connection for the lease and 50 calls"
    );
    let at_once: Vec<_> = (0..8)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move { c.put(&format!("/tcpb/f/k{n}"), "w", lease).await })
        })
        .collect();
    for call in at_once {
        call.await.unwrap().unwrap();
    }
    assert!(c.connections() <= 8, "{} connections", c.connections());
    // A call that times out drops its connection; the next call opens a
    // new one once etcd answers again.
    e.stop();
    let quick = Etcd::new(std::slice::from_ref(&e.url), Duration::from_millis(300)).unwrap();
    quick.range("/tcpb/f/", 0).await.unwrap_err();
    e.resume();
    assert_eq!(quick.range("/tcpb/f/", 0).await.unwrap().1.len(), 50);
}

/// Turns on authentication: user `root` (any password), and user `tcpb`
/// with password `pw` who may read and write `/tcpb/` only.
async fn enable_auth(root: &Etcd) {
    let prefix = "/tcpb/";
    let calls = [
        (
            "/v3/auth/user/add",
            json!({ "name": "root", "password": "rootpw" }),
        ),
        (
            "/v3/auth/user/grant",
            json!({ "user": "root", "role": "root" }),
        ),
        (
            "/v3/auth/user/add",
            json!({ "name": "tcpb", "password": "pw" }),
        ),
        ("/v3/auth/role/add", json!({ "name": "farm" })),
        (
            "/v3/auth/role/grant",
            json!({ "name": "farm", "perm": {
                "permType": "READWRITE",
                "key": B64.encode(prefix),
                "range_end": B64.encode(prefix_end(prefix)),
            } }),
        ),
        (
            "/v3/auth/user/grant",
            json!({ "user": "tcpb", "role": "farm" }),
        ),
        ("/v3/auth/enable", json!({})),
    ];
    for (path, body) in calls {
        root.post(path, body).await.unwrap();
    }
}

#[tokio::test]
async fn a_user_with_a_password_works_and_a_forgotten_token_is_replaced() {
    // Tokens unused for a second are forgotten by etcd.
    let Some(e) = start_etcd_with(&["--auth-token-ttl", "1"]) else {
        return;
    };
    let open = client(&e);
    first_lease(&open, 10).await;
    enable_auth(&open).await;
    let e1 = open.put("/tcpb/x", "v", 0).await.unwrap_err().to_string();
    assert!(e1.contains("user name"), "no user: {e1}");
    let wrong = client(&e).with_auth("tcpb", "nope");
    let e2 = wrong.put("/tcpb/x", "v", 0).await.unwrap_err().to_string();
    assert!(
        e2.contains("user tcpb") && e2.contains("authentication failed"),
        "{e2}"
    );
    let c = client(&e).with_auth("tcpb", "pw");
    let lease = c.grant(10).await.unwrap();
    assert!(c.create("/tcpb/f/taken/h/0", "me", lease).await.unwrap());
    let mut w = c.watch("/tcpb/f/", 0).await.unwrap();
    let e3 = c.put("/elsewhere", "x", 0).await.unwrap_err().to_string();
    assert!(e3.contains("permission denied"), "outside /tcpb/: {e3}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let calls = c.counts().calls.load(Ordering::Relaxed);
    c.put("/tcpb/f/taken/h/1", "me", lease).await.unwrap();
    let made = c.counts().calls.load(Ordering::Relaxed) - calls;
    assert_eq!(made, 3, "refused, authenticated again, made again");
    let seen = w.next().await.unwrap();
    assert_eq!(seen[0].key, "/tcpb/f/taken/h/1");
}
