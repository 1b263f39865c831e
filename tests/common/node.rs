//! A gateway as its own process (`ketenpoort serve`), for tests that need
//! several of them, a `kill -9`, or a restart: the PostgreSQL tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper::Method;
use ketenpoort::client::PartnerClient;

/// A free port on the loopback (free when asked; the test binds it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One gateway process, its config and where its stderr goes; killed on
/// drop.
pub struct Node {
    pub cfg: PathBuf,
    pub port: u16,
    pub console: u16,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Not started yet; partner and console ports of its own.
    pub fn new(cfg: PathBuf, log: PathBuf) -> Self {
        Self {
            cfg,
            port: free_port(),
            console: free_port(),
            log,
            child: None,
        }
    }

    pub fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        self.spawn_with(log.into(), None);
    }

    /// Started at log level info with its stderr a pipe that nobody reads:
    /// a log reader that has stopped (`log()` stays empty).
    pub fn spawn_with_unread_stderr(&mut self) {
        self.spawn_with(Stdio::piped(), Some("info"));
    }

    fn spawn_with(&mut self, stderr: Stdio, level: Option<&str>) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ketenpoort"));
        cmd.args(["serve", "--config"])
            .arg(&self.cfg)
            .args(["--partners-addr", &format!("127.0.0.1:{}", self.port)])
            .args(["--console-addr", &format!("127.0.0.1:{}", self.console)])
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(level) = level {
            cmd.env("RUST_LOG", level);
        }
        self.child = Some(cmd.spawn().expect("gateway starts"));
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's exit status once it has exited by itself (then it is
    /// no longer this node's); `None` while it runs.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then kill after 15 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until the node answers `whoami` (30 s at most).
pub async fn wait_serving(client: &PartnerClient, node: &Node) {
    let started = Instant::now();
    loop {
        let r = client.send(Method::GET, "/v1/whoami", &[], None).await;
        if matches!(r, Ok(ref r) if r.status == 200) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway did not start: {}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
