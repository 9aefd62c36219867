//! Watches partition leadership during a run: one thread per node asks it for the topic's
//! metadata every 50 ms, and the first sighting of each new leader epoch of a partition (on any
//! node) is written down with its time. The zombie-acks checker compares acknowledgements with
//! these times.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom::tools::Client;

use super::cluster::ChaosCluster;

/// A new leader epoch of a partition, first seen `seen` into the run.
#[derive(Clone, Debug)]
pub struct Election {
    pub partition: i32,
    pub epoch: i32,
    pub leader: i32,
    pub seen: Duration,
}

#[derive(Default)]
struct Seen {
    epochs: HashMap<i32, i32>,
    elections: Vec<Election>,
}

/// (partition, leader, epoch) as `addr` reports them.
fn leadership(c: &mut Client, topic: &str) -> Option<Vec<(i32, i32, i32)>> {
    let req = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
    let md: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).ok()?;
    let t = md.topics.first()?;
    Some(
        t.partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0, p.leader_epoch))
            .collect(),
    )
}

/// Watches until `stop`; returns every election seen, in order of sighting.
pub fn watch(
    cluster: Arc<Mutex<ChaosCluster>>,
    topic: &'static str,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Election>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let n = cluster
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .nodes
        .len();
    let watchers: Vec<_> = (0..n)
        .map(|i| {
            let (cluster, stop, seen) = (cluster.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut client: Option<Client> = None;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    let addr = {
                        let c = cluster.lock().unwrap_or_else(|p| p.into_inner());
                        let node = &c.nodes[i];
                        let up = c.is_running(node.id) && !node.paused && !node.cut;
                        up.then(|| format!("{}:{}", node.host, node.port))
                    };
                    let Some(addr) = addr else {
                        client = None;
                        continue;
                    };
                    if client.is_none() {
                        client = Client::connect(&addr).ok();
                    }
                    let Some(found) = client.as_mut().and_then(|c| leadership(c, topic)) else {
                        client = None;
                        continue;
                    };
                    let at = start.elapsed();
                    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                    for (partition, leader, epoch) in found {
                        let known = s.epochs.entry(partition).or_insert(-1);
                        if epoch > *known {
                            *known = epoch;
                            s.elections.push(Election {
                                partition,
                                epoch,
                                leader,
                                seen: at,
                            });
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::spawn(move || {
        for w in watchers {
            let _ = w.join();
        }
        let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut s.elections)
    })
}
