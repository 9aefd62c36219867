//! Command-line tools that talk to a running cluster as a Kafka client would
//! (`strom cluster status`). A small blocking client over the `kafka-protocol` codecs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::handlers::describe_quorum::METADATA_TOPIC;

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
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("strom-cli")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, key.request_header_version(version))?;
        req.encode(&mut buf, version)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        let mut body = Bytes::from(body);
        let rh = ResponseHeader::decode(&mut body, key.response_header_version(version))?;
        anyhow::ensure!(rh.correlation_id == correlation, "response out of order");
        Resp::decode(&mut body, version)
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
