//! Command-line tools that talk to a running cluster as a Kafka client would
//! (`strom cluster status`). A small blocking client over the `kafka-protocol` codecs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::handlers::describe_quorum::METADATA_TOPIC;
use crate::protocol;

/// One connection to one broker.
pub struct Client {
    stream: TcpStream,
    next_correlation: i32,
}

impl Client {
    pub fn connect(addr: &str) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(addr)
            .map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            next_correlation: 1,
        })
    }

    /// Sends one request at `version` and reads its response.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let frame = protocol::encode_request(key, version, correlation, "strom-cli", req)?;
        self.stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        let (got, resp) = protocol::decode_response(key, version, Bytes::from(body))?;
        anyhow::ensure!(got == correlation, "response out of order");
        Ok(resp)
    }
}

/// `strom cluster status`: the quorum (leader, term, voters and their lag) and every broker's
/// registration and fenced state, as a text table.
pub fn cluster_status(bootstrap: &str) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let quorum: DescribeQuorumResponse = c.call(
        ApiKey::DescribeQuorum,
        2,
        &DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]),
    )?;
    let cluster: DescribeClusterResponse = c.call(
        ApiKey::DescribeCluster,
        2,
        &DescribeClusterRequest::default()
            .with_endpoint_type(1)
            .with_include_fenced_brokers(true),
    )?;
    let mut out = String::new();
    out.push_str(&format!("cluster id:  {}\n", cluster.cluster_id.as_str()));
    let p = quorum
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow::anyhow!("the broker returned no quorum description"))?;
    if p.error_code != 0 {
        let why = p
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        out.push_str(&format!(
            "quorum:      unavailable (error {}: {why})\n",
            p.error_code
        ));
    } else {
        out.push_str(&format!(
            "controller:  node {} (Raft leader), term {}, committed index {}\n",
            p.leader_id.0, p.leader_epoch, p.high_watermark
        ));
        out.push_str("voters:\n  id  log end  lag\n");
        for v in &p.current_voters {
            let (end, lag) = if v.log_end_offset < 0 {
                ("?".to_string(), "unreachable".to_string())
            } else {
                (
                    v.log_end_offset.to_string(),
                    (p.high_watermark - v.log_end_offset).max(0).to_string(),
                )
            };
            let leader = if v.replica_id == p.leader_id {
                "  (leader)"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {:<3} {:<8} {lag}{leader}\n",
                v.replica_id.0, end
            ));
        }
    }
    out.push_str("brokers:\n  id  endpoint                  state\n");
    for b in &cluster.brokers {
        let endpoint = format!("{}:{}", b.host.as_str(), b.port);
        let state = if b.is_fenced { "fenced" } else { "active" };
        out.push_str(&format!(
            "  {:<3} {:<25} {state}\n",
            b.broker_id.0, endpoint
        ));
    }
    Ok(out)
}
