//! Three `strom` processes configured like `strom dev`, on free loopback ports, that the
//! nemesis can kill, pause, resume and restart.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeClusterResponse};
use strom::tools::Client;

pub struct Node {
    pub id: i32,
    pub port: u16,
    pub controller_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    pub paused: bool,
}

pub struct ChaosCluster {
    pub nodes: Vec<Node>,
    bin: PathBuf,
    voters: String,
    log_dir: PathBuf,
}

fn free_port(used: &[u16]) -> u16 {
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        // Stay below the ephemeral range so client sockets never take it first.
        let port = 20_000 + (port % 12_000);
        if !used.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

#[allow(unsafe_code)]
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a child we own.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

impl ChaosCluster {
    pub fn new(bin: &Path, out: &Path, n: i32) -> ChaosCluster {
        let mut used = Vec::new();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let port = free_port(&used);
            used.push(port);
            let controller_port = free_port(&used);
            used.push(controller_port);
            nodes.push(Node {
                id,
                port,
                controller_port,
                dir: out.join(format!("node-{id}")),
                child: None,
                paused: false,
            });
        }
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        ChaosCluster {
            nodes,
            bin: bin.to_path_buf(),
            voters,
            log_dir: out.join("logs"),
        }
    }

    fn node(&mut self, id: i32) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    pub fn start(&mut self, id: i32) -> anyhow::Result<()> {
        let bin = self.bin.clone();
        let voters = self.voters.clone();
        std::fs::create_dir_all(&self.log_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("node-{id}.log")))?;
        let node = self.node(id);
        let child = Command::new(&bin)
            .arg("serve")
            .args(["--set", &format!("node.id={id}")])
            .args(["--set", &format!("controller.quorum.voters={voters}")])
            .args([
                "--set",
                &format!(
                    "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                    node.port, node.controller_port
                ),
            ])
            .args(["--set", &format!("log.dirs={}", node.dir.display())])
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", bin.display()))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    pub fn kill(&mut self, id: i32) {
        let node = self.node(id);
        if let Some(mut c) = node.child.take() {
            if node.paused {
                signal(c.id(), libc::SIGCONT);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        node.paused = false;
    }

    pub fn pause(&mut self, id: i32) {
        let node = self.node(id);
        if let Some(c) = &node.child {
            signal(c.id(), libc::SIGSTOP);
            node.paused = true;
        }
    }

    pub fn resume(&mut self, id: i32) {
        let node = self.node(id);
        if let Some(c) = &node.child {
            signal(c.id(), libc::SIGCONT);
        }
        node.paused = false;
    }

    pub fn is_running(&self, id: i32) -> bool {
        self.nodes[id as usize - 1].child.is_some()
    }

    /// Starts every node that is down and resumes every paused one.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        for id in 1..=self.nodes.len() as i32 {
            if self.nodes[id as usize - 1].paused {
                self.resume(id);
            }
            if !self.is_running(id) {
                self.start(id)?;
            }
        }
        Ok(())
    }

    pub fn stop_all(&mut self) {
        for id in 1..=self.nodes.len() as i32 {
            self.kill(id);
        }
    }

    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A running, unpaused node's client address.
    pub fn any_live(&self) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.child.is_some() && !n.paused)
            .map(|n| format!("127.0.0.1:{}", n.port))
    }

    /// The active controller, asked of a live node.
    pub fn controller(&self) -> Option<i32> {
        let addr = self.any_live()?;
        let mut c = Client::connect(&addr).ok()?;
        let d: DescribeClusterResponse = c
            .call(
                ApiKey::DescribeCluster,
                2,
                &DescribeClusterRequest::default().with_endpoint_type(1),
            )
            .ok()?;
        Some(d.controller_id.0).filter(|c| *c > 0)
    }

    /// Waits until `f` holds or `timeout` passes.
    pub fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}
