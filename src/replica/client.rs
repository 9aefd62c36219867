//! A minimal async Kafka client for broker-to-broker calls (follower fetches,
//! OffsetForLeaderEpoch): one request in flight per connection.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol;

pub struct Connection {
    stream: TcpStream,
    next_correlation: i32,
    max_frame: usize,
}

impl Connection {
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        max_frame: usize,
    ) -> anyhow::Result<Connection> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {addr} timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            next_correlation: 1,
            max_frame,
        })
    }

    /// Sends one request and reads its response, within `timeout`.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
        timeout: Duration,
    ) -> anyhow::Result<Resp> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = protocol::encode_request(key, version, correlation, "strom-replica", req)?;
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let mut size = [0u8; 4];
            self.stream.read_exact(&mut size).await?;
            let size = i32::from_be_bytes(size);
            anyhow::ensure!(
                size >= 0 && size as usize <= self.max_frame,
                "response frame of {size} bytes"
            );
            let body = protocol::read_body(&mut self.stream, size as usize).await?;
            Ok::<Bytes, anyhow::Error>(body.freeze())
        };
        let body = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("{key:?} timed out"))??;
        let (got, resp) = protocol::decode_response(key, version, body)?;
        anyhow::ensure!(got == correlation, "response out of order");
        Ok(resp)
    }
}
