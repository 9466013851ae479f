//! A real etcd (Debian's `etcd-server`) on loopback ports chosen at run
//! time, for team mode's tests: stopped, killed and restarted with or
//! without its data.

use super::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private etcd; killed and its data removed when dropped.
pub struct Etcd {
    child: Option<Child>,
    pub url: String,
    peer_url: String,
    dir: tempfile::TempDir,
    /// Which data directory it uses (a new one after `restart(false)`).
    generation: u32,
}

/// True when etcd is installed. Under CI=true it must be.
pub fn have_etcd() -> bool {
    super::have_component(&["etcd"], "etcd-server")
}

impl Etcd {
    /// Starts an etcd, or `None` when it is not installed outside CI.
    pub fn start() -> Option<Etcd> {
        if !have_etcd() {
            return None;
        }
        for _ in 0..5 {
            let mut e = Etcd {
                child: None,
                url: format!("http://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                dir: tempfile::tempdir().unwrap(),
                generation: 0,
            };
            if e.spawn() {
                return Some(e);
            }
        }
        panic!("etcd did not start");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join(format!("data{}", self.generation))
    }

    /// Starts the process and waits until its gateway grants a lease.
    fn spawn(&mut self) -> bool {
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &self.url])
            .args(["--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &self.peer_url])
            .args(["--initial-advertise-peer-urls", &self.peer_url])
            .arg("--initial-cluster")
            .arg(format!("default={}", self.peer_url))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self
                .post("/v3/lease/grant", r#"{"TTL":5}"#)
                .contains("\"ID\"")
            {
                return true;
            }
            if let Some(c) = &mut self.child
                && c.try_wait().unwrap().is_some()
            {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// One POST to the gateway with curl-free plain HTTP; the body of the
    /// answer, or "" when none came.
    pub fn post(&self, path: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(req.as_bytes()).is_err() {
            return String::new();
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_once("\r\n\r\n")
            .map_or(String::new(), |x| x.1.to_string())
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: signalling the etcd this test started.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Stops etcd (SIGSTOP): it answers nothing, its connections stay open.
    pub fn stop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a stopped etcd run again.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills etcd (SIGKILL).
    pub fn kill(&mut self) {
        self.signal(libc::SIGCONT);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports, with its data or a new, empty
    /// data directory.
    pub fn restart(&mut self, keep_data: bool) {
        self.kill();
        if !keep_data {
            self.generation += 1;
        }
        for _ in 0..3 {
            if self.spawn() {
                return;
            }
            self.kill();
        }
        panic!("etcd did not restart");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
