//! `strom dev`: a local cluster of N nodes as child processes, on the ports DESIGN.md §5 names
//! (clients on 9092, 9192, 9292, ...; controllers on 9093, 9193, 9293, ...), data under
//! `./strom-dev/node-N`, every node's log lines prefixed on one terminal. It prints the bootstrap
//! string once every broker is registered; SIGINT or SIGTERM stops all nodes cleanly. A node
//! that exits leaves the others running; `kill N`, `stop N` and `start N` on standard input
//! kill, stop and (re)start one node, to try failover by hand.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeClusterResponse};

use crate::tools::Client;

/// How one node is started: the `strom serve` arguments that `strom dev`, the integration
/// tests' harness and the chaos suite all give a node (each adds its own process wrapping,
/// output and extra settings).
pub struct NodeSpec {
    /// `node.id`; `None` leaves the default (a single node).
    pub id: Option<i32>,
    /// `controller.quorum.voters`; `None` means this node alone.
    pub voters: Option<String>,
    pub host: String,
    pub port: u16,
    pub controller_port: u16,
    pub log_dir: PathBuf,
    /// The HTTP admin listener's port (on `host`); `None` turns it off.
    pub admin_port: Option<u16>,
}

impl NodeSpec {
    /// `serve` and its `--set` pairs.
    pub fn serve_args(&self) -> Vec<String> {
        let mut sets = Vec::new();
        if let Some(id) = self.id {
            sets.push(format!("node.id={id}"));
        }
        if let Some(v) = &self.voters {
            sets.push(format!("controller.quorum.voters={v}"));
        }
        sets.push(format!(
            "listeners=PLAINTEXT://{host}:{},CONTROLLER://{host}:{}",
            self.port,
            self.controller_port,
            host = self.host
        ));
        sets.push(format!("log.dirs={}", self.log_dir.display()));
        sets.push(match self.admin_port {
            Some(p) => format!("admin.http.listener={}:{p}", self.host),
            None => "admin.http.listener=".to_string(),
        });
        std::iter::once("serve".to_string())
            .chain(sets.into_iter().flat_map(|s| ["--set".to_string(), s]))
            .collect()
    }
}

/// Where the nodes of a local cluster listen — ids 1..=n, each a host, a client port and a
/// controller port — and the voter list they share. `strom dev`, the integration harness and the
/// chaos suite lay out their clusters with it and start each node from `spec`.
pub struct Layout {
    /// (host, client port, controller port) of node 1, 2, ...
    pub nodes: Vec<(String, u16, u16)>,
}

impl Layout {
    /// `controller.quorum.voters` for every node: `1@host:port,2@host:port,...`.
    pub fn voters(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, (host, _, controller))| format!("{}@{host}:{controller}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's client address, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|(host, port, _)| format!("{host}:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How node `id` (1-based) starts, its data in `log_dir`.
    pub fn spec(&self, id: i32, log_dir: PathBuf) -> NodeSpec {
        let (host, port, controller_port) = self.nodes[id as usize - 1].clone();
        NodeSpec {
            id: Some(id),
            voters: Some(self.voters()),
            host,
            port,
            controller_port,
            log_dir,
            admin_port: None,
        }
    }
}

/// Sends signal `sig` to process `pid`; false when it could not (the process is gone).
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions; callers pass their own children.
    unsafe { libc::kill(pid as i32, sig) == 0 }
}

pub struct DevOptions {
    pub nodes: u16,
    pub base_port: u16,
    pub data: PathBuf,
    pub clean: bool,
    /// Extra `name=value` settings for every node.
    pub sets: Vec<String>,
}

/// Node `i`'s client and controller ports: `base`, `base + 1` for node 1, then 100 apart.
fn ports(base: u16, i: u16) -> (u16, u16) {
    let port = base + 100 * (i - 1);
    (port, port + 1)
}

/// Copies a child's output to ours, one prefixed line at a time.
fn relay(prefix: String, stream: impl std::io::Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            println!("[{prefix}] {line}");
        }
    });
}

fn active_brokers(addr: &str) -> usize {
    let Ok(mut c) = Client::connect(addr) else {
        return 0;
    };
    c.call::<_, DescribeClusterResponse>(
        ApiKey::DescribeCluster,
        2,
        &DescribeClusterRequest::default().with_endpoint_type(1),
    )
    .map(|d| d.brokers.iter().filter(|b| !b.is_fenced).count())
    .unwrap_or(0)
}

fn terminate(child: &Child) {
    signal(child.id(), libc::SIGTERM);
}

/// A command typed on `strom dev`'s standard input.
#[derive(Debug, PartialEq, Eq)]
enum DevCommand {
    Kill(u16),
    Stop(u16),
    Start(u16),
}

fn parse_command(line: &str, nodes: u16) -> Result<DevCommand, String> {
    let mut words = line.split_whitespace();
    let (Some(verb), Some(n), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "unknown command `{}`; type `kill N`, `stop N` or `start N`",
            line.trim()
        ));
    };
    let i: u16 = n
        .parse()
        .ok()
        .filter(|i| (1..=nodes).contains(i))
        .ok_or_else(|| format!("`{n}` is not a node (1..={nodes})"))?;
    match verb {
        "kill" => Ok(DevCommand::Kill(i)),
        "stop" => Ok(DevCommand::Stop(i)),
        "start" => Ok(DevCommand::Start(i)),
        other => Err(format!(
            "unknown command `{other}`; type `kill N`, `stop N` or `start N`"
        )),
    }
}

/// Lines typed on standard input (none when it is closed or not a terminal's).
fn read_commands() -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if !line.trim().is_empty() && tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs the cluster until SIGINT/SIGTERM (or until every node has exited); a node that exits
/// or is killed leaves the others running, and commands on standard input kill, stop and start
/// single nodes, so failover can be tried by hand.
pub fn run(opts: DevOptions) -> anyhow::Result<()> {
    anyhow::ensure!(opts.nodes >= 1, "--nodes must be at least 1");
    anyhow::ensure!(
        (opts.base_port as u32 + 100 * (opts.nodes as u32 - 1)) < u16::MAX as u32,
        "--base-port {} leaves no room for {} nodes",
        opts.base_port,
        opts.nodes
    );
    if opts.clean && opts.data.exists() {
        std::fs::remove_dir_all(&opts.data)?;
        println!("strom dev: removed {}", opts.data.display());
    }
    let exe = std::env::current_exe()?;
    let layout = Layout {
        nodes: (1..=opts.nodes)
            .map(|i| {
                let (port, controller) = ports(opts.base_port, i);
                ("127.0.0.1".to_string(), port, controller)
            })
            .collect(),
    };
    // Nodes that cannot bind exit at once; a cluster already on these ports would then answer
    // for them and look ready. Say so before starting anything.
    for (i, (host, port, controller)) in layout.nodes.iter().enumerate() {
        for (what, p) in [("client", *port), ("controller", *controller)] {
            if let Err(e) = std::net::TcpListener::bind((host.as_str(), p)) {
                anyhow::bail!(
                    "node {}'s {what} port {host}:{p} is taken ({e}): is another `strom dev` running? Stop it, or pick other ports with --base-port",
                    i + 1
                );
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            runtime.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                if let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
            });
            stop.store(true, Ordering::Relaxed);
        });
    }
    let spawn = |i: u16| -> anyhow::Result<Child> {
        let mut spec = layout.spec(i32::from(i), opts.data.join(format!("node-{i}")));
        // 9644, 9744, ... beside the default client ports 9092, 9192, ...
        spec.admin_port = spec.port.checked_add(552);
        let mut cmd = Command::new(&exe);
        cmd.args(spec.serve_args());
        for s in &opts.sets {
            cmd.args(["--set", s]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Our own process group: a Ctrl-C reaches only us, and we stop the nodes in order.
            .process_group(0)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start node {i}: {e}"))?;
        if let Some(out) = child.stdout.take() {
            relay(format!("node-{i}"), out);
        }
        if let Some(err) = child.stderr.take() {
            relay(format!("node-{i}"), err);
        }
        Ok(child)
    };
    let mut children: Vec<Option<Child>> = Vec::new();
    for i in 1..=opts.nodes {
        children.push(Some(spawn(i)?));
    }
    let commands = read_commands();
    let bootstrap = layout.bootstrap();
    let first = format!("127.0.0.1:{}", ports(opts.base_port, 1).0);
    let started = Instant::now();
    let mut ready = false;
    while !stop.load(Ordering::Relaxed) {
        if !ready && active_brokers(&first) == opts.nodes as usize {
            ready = true;
            println!(
                "strom dev: {} nodes ready in {:.1} s; bootstrap servers: {bootstrap}",
                opts.nodes,
                started.elapsed().as_secs_f64()
            );
            println!(
                "strom dev: to try failover type `kill N` (SIGKILL), `stop N` (SIGTERM) or `start N`, N in 1..={}; watch with `strom cluster status --bootstrap {bootstrap}`",
                opts.nodes
            );
        }
        for (i, slot) in children.iter_mut().enumerate() {
            let Some(c) = slot else { continue };
            if let Ok(Some(status)) = c.try_wait() {
                println!(
                    "strom dev: node {} exited ({status}); the others keep running — `start {}` brings it back",
                    i + 1,
                    i + 1
                );
                *slot = None;
            }
        }
        if children.iter().all(Option::is_none) {
            println!("strom dev: every node has exited");
            break;
        }
        while let Ok(line) = commands.try_recv() {
            match parse_command(&line, opts.nodes) {
                Ok(DevCommand::Kill(i)) => match &mut children[i as usize - 1] {
                    Some(c) => {
                        let _ = c.kill();
                        println!("strom dev: node {i} killed (SIGKILL)");
                    }
                    None => println!("strom dev: node {i} is not running"),
                },
                Ok(DevCommand::Stop(i)) => match &children[i as usize - 1] {
                    Some(c) => {
                        terminate(c);
                        println!("strom dev: node {i} asked to stop (SIGTERM)");
                    }
                    None => println!("strom dev: node {i} is not running"),
                },
                Ok(DevCommand::Start(i)) => match &children[i as usize - 1] {
                    Some(_) => println!("strom dev: node {i} is already running"),
                    None => match spawn(i) {
                        Ok(c) => {
                            children[i as usize - 1] = Some(c);
                            println!("strom dev: node {i} started");
                        }
                        Err(e) => println!("strom dev: {e}"),
                    },
                },
                Err(e) => println!("strom dev: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut children: Vec<Child> = children.into_iter().flatten().collect();
    println!("strom dev: stopping {} nodes", children.len());
    for c in &children {
        terminate(c);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in children.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = c.try_wait() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    println!("strom dev: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_spec_gives_serve_its_settings() {
        let spec = NodeSpec {
            id: Some(2),
            voters: Some("1@h:9093,2@h:9193".into()),
            host: "h".into(),
            port: 9192,
            controller_port: 9193,
            log_dir: PathBuf::from("/d/node-2"),
            admin_port: Some(9744),
        };
        assert_eq!(
            spec.serve_args().join(" "),
            "serve --set node.id=2 --set controller.quorum.voters=1@h:9093,2@h:9193 \
             --set listeners=PLAINTEXT://h:9192,CONTROLLER://h:9193 --set log.dirs=/d/node-2 \
             --set admin.http.listener=h:9744"
        );
    }

    #[test]
    fn a_layout_gives_every_node_the_same_voters_and_its_own_ports() {
        let layout = Layout {
            nodes: (1..=3)
                .map(|i| {
                    let (port, controller) = ports(9092, i);
                    ("127.0.0.1".to_string(), port, controller)
                })
                .collect(),
        };
        assert_eq!(
            layout.voters(),
            "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
        );
        assert_eq!(
            layout.bootstrap(),
            "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"
        );
        let spec = layout.spec(3, PathBuf::from("/d/node-3"));
        assert_eq!(
            (spec.id, spec.port, spec.controller_port),
            (Some(3), 9292, 9293)
        );
        assert_eq!(spec.voters.as_deref(), Some(layout.voters().as_str()));
    }

    #[test]
    fn commands_name_a_node_in_range() {
        assert_eq!(parse_command("kill 2", 3), Ok(DevCommand::Kill(2)));
        assert_eq!(parse_command(" start 3 ", 3), Ok(DevCommand::Start(3)));
        assert_eq!(parse_command("stop 1", 3), Ok(DevCommand::Stop(1)));
        assert!(parse_command("kill 4", 3).is_err());
        assert!(parse_command("kill", 3).is_err());
        assert!(parse_command("explode 1", 3).is_err());
    }
}
