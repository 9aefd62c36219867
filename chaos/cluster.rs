//! Three `strom` processes configured like `strom dev` that the nemesis can kill, pause, resume
//! and restart: on free loopback ports, or (`netns`) each in its own network namespace on a
//! bridge, so the nemesis can also cut one node off the network, or off its peers only, and heal
//! it (needs root and iproute2).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeClusterResponse};
use strom::dev::{signal, Layout};
use strom::tools::Client;

pub struct Node {
    pub id: i32,
    /// The address the node listens on and advertises.
    pub host: String,
    pub port: u16,
    pub controller_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    pub paused: bool,
    /// Its link to the bridge is down (netns clusters only).
    pub cut: bool,
    /// Cut off from the other nodes only: clients still reach it (netns clusters only).
    pub isolated: bool,
    /// Sent SIGTERM (a controlled shutdown); `heal` reaps it and starts it again.
    pub stopping: bool,
}

/// The namespaces and bridge of a netns cluster.
struct Net {
    tag: u32,
    bridge: String,
}

impl Net {
    fn namespace(&self, id: i32) -> String {
        format!("chaos{}-{id}", self.tag)
    }

    fn veth(&self, id: i32) -> String {
        format!("cv{}x{id}", self.tag)
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run `ip` (iproute2): {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

pub struct ChaosCluster {
    pub nodes: Vec<Node>,
    bin: PathBuf,
    layout: Layout,
    log_dir: PathBuf,
    net: Option<Net>,
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

impl ChaosCluster {
    pub fn new(bin: &Path, out: &Path, n: i32, netns: bool) -> anyhow::Result<ChaosCluster> {
        let net = netns.then(|| {
            let tag = std::process::id() % 200 + 20;
            Net {
                tag,
                bridge: format!("cbr{tag}"),
            }
        });
        let subnet = net.as_ref().map(|n| format!("10.213.{}", n.tag));
        let mut used = Vec::new();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let (host, port, controller_port) = match &subnet {
                Some(subnet) => (format!("{subnet}.{id}"), 9092, 9093),
                None => {
                    let port = free_port(&used);
                    used.push(port);
                    let controller_port = free_port(&used);
                    used.push(controller_port);
                    ("127.0.0.1".to_string(), port, controller_port)
                }
            };
            nodes.push(Node {
                id,
                host,
                port,
                controller_port,
                dir: out.join(format!("node-{id}")),
                child: None,
                paused: false,
                cut: false,
                isolated: false,
                stopping: false,
            });
        }
        let layout = Layout {
            nodes: nodes
                .iter()
                .map(|n| (n.host.clone(), n.port, n.controller_port))
                .collect(),
        };
        let cluster = ChaosCluster {
            nodes,
            bin: bin.to_path_buf(),
            layout,
            log_dir: out.join("logs"),
            net,
        };
        if let (Some(net), Some(subnet)) = (&cluster.net, &subnet) {
            // Leftovers of an earlier run with the same tag go first.
            let _ = ip(&["link", "del", &net.bridge]);
            ip(&["link", "add", &net.bridge, "type", "bridge"])?;
            ip(&[
                "addr",
                "add",
                &format!("{subnet}.254/24"),
                "dev",
                &net.bridge,
            ])?;
            ip(&["link", "set", &net.bridge, "up"])?;
            for node in &cluster.nodes {
                let (ns, veth) = (net.namespace(node.id), net.veth(node.id));
                let _ = ip(&["netns", "del", &ns]);
                ip(&["netns", "add", &ns])?;
                ip(&[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ])?;
                ip(&["link", "set", &veth, "master", &net.bridge])?;
                ip(&["link", "set", &veth, "up"])?;
                ip(&["-n", &ns, "link", "set", "lo", "up"])?;
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", node.host),
                    "dev",
                    "eth0",
                ])?;
                ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            }
        }
        Ok(cluster)
    }

    /// Takes node `id` off the network (its bridge link goes down): it can reach neither its
    /// peers nor the clients.
    pub fn cut(&mut self, id: i32) -> anyhow::Result<()> {
        let net = self
            .net
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("cutting a node needs a netns cluster"))?;
        ip(&["link", "set", &net.veth(id), "down"])?;
        self.node(id).cut = true;
        Ok(())
    }

    /// Cuts node `id` off from the other nodes — its peers in the metadata quorum and the
    /// replicas it leads or follows — while clients (on the host) still reach it: a blackhole
    /// route to each peer in its namespace and to it in each peer's, so both sides hear silence.
    pub fn isolate(&mut self, id: i32) -> anyhow::Result<()> {
        self.isolation_routes(id, "add")?;
        self.node(id).isolated = true;
        Ok(())
    }

    fn isolation_routes(&self, id: i32, verb: &str) -> anyhow::Result<()> {
        let net = self
            .net
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("isolating a node needs a netns cluster"))?;
        let host = |n: &Node| format!("{}/32", n.host);
        let me = &self.nodes[id as usize - 1];
        for peer in self.nodes.iter().filter(|n| n.id != id) {
            ip(&[
                "-n",
                &net.namespace(id),
                "route",
                verb,
                "blackhole",
                &host(peer),
            ])?;
            ip(&[
                "-n",
                &net.namespace(peer.id),
                "route",
                verb,
                "blackhole",
                &host(me),
            ])?;
        }
        Ok(())
    }

    fn reconnect(&mut self, id: i32) -> anyhow::Result<()> {
        if let Some(net) = &self.net {
            ip(&["link", "set", &net.veth(id), "up"])?;
        }
        self.node(id).cut = false;
        Ok(())
    }

    fn node(&mut self, id: i32) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    pub fn start(&mut self, id: i32) -> anyhow::Result<()> {
        let bin = self.bin.clone();
        let dir = self.node(id).dir.clone();
        let spec = self.layout.spec(id, dir);
        std::fs::create_dir_all(&self.log_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("node-{id}.log")))?;
        let netns = self.net.as_ref().map(|n| n.namespace(id));
        let node = self.node(id);
        let mut cmd = match &netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let child = cmd
            .args(spec.serve_args())
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

    /// SIGTERM: the node moves its leadership away and exits on its own (a controlled
    /// shutdown); `heal` reaps it — killing it if it has not finished — and starts it again.
    pub fn terminate(&mut self, id: i32) {
        let node = self.node(id);
        if let Some(c) = &node.child {
            signal(c.id(), libc::SIGTERM);
            node.stopping = true;
        }
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

    /// Starts every node that is down, resumes every paused one and reconnects every cut one.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        for id in 1..=self.nodes.len() as i32 {
            if self.nodes[id as usize - 1].cut {
                self.reconnect(id)?;
            }
            if self.nodes[id as usize - 1].isolated {
                self.isolation_routes(id, "del")?;
                self.node(id).isolated = false;
            }
            if self.nodes[id as usize - 1].paused {
                self.resume(id);
            }
            if self.nodes[id as usize - 1].stopping {
                let node = self.node(id);
                node.stopping = false;
                if let Some(c) = node.child.as_mut() {
                    if !matches!(c.try_wait(), Ok(Some(_))) {
                        eprintln!(
                            "chaos: node {id} had not finished its controlled shutdown; killing it"
                        );
                    }
                }
                self.kill(id);
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
            .map(|n| format!("{}:{}", n.host, n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A running, unpaused node's client address.
    pub fn any_live(&self) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.child.is_some() && !n.paused && !n.cut && !n.isolated && !n.stopping)
            .map(|n| format!("{}:{}", n.host, n.port))
    }

    /// The transaction coordinator of `transactional_id`, asked of a live node.
    pub fn txn_coordinator(&self, transactional_id: &str) -> Option<i32> {
        use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
        let addr = self.any_live()?;
        let mut c = Client::connect(&addr).ok()?;
        let req = FindCoordinatorRequest::default()
            .with_key(kafka_protocol::protocol::StrBytes::from_string(
                transactional_id.to_string(),
            ))
            .with_key_type(1);
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &req).ok()?;
        (r.error_code == 0 && r.node_id.0 > 0).then_some(r.node_id.0)
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
        if let Some(net) = &self.net {
            for node in &self.nodes {
                let _ = ip(&["netns", "del", &net.namespace(node.id)]);
            }
            let _ = ip(&["link", "del", &net.bridge]);
        }
    }
}
