//! A minimal async Kafka client for broker-to-broker calls (follower fetches,
//! OffsetForLeaderEpoch): one request in flight per connection, over TLS and authenticated
//! with SASL when the inter-broker listener asks for them (`auth::client::ClientSecurity`).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::client::{ClientSecurity, SaslClient};
use crate::protocol;

/// A plaintext or TLS byte stream.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Connection {
    stream: Box<dyn Io>,
    next_correlation: i32,
    max_frame: usize,
}

impl Connection {
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        max_frame: usize,
        security: &ClientSecurity,
    ) -> anyhow::Result<Connection> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {addr} timed out"))??;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Io> = match &security.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| anyhow::anyhow!("`{host}` is no TLS server name: {e}"))?;
                let connector = tokio_rustls::TlsConnector::from(tls.clone());
                let stream = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| anyhow::anyhow!("TLS handshake with {addr} timed out"))??;
                Box::new(stream)
            }
        };
        let mut conn = Connection {
            stream,
            next_correlation: 1,
            max_frame,
        };
        if let Some(creds) = &security.sasl {
            let req = SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(creds.mechanism.name()));
            let h: SaslHandshakeResponse =
                conn.call(ApiKey::SaslHandshake, 1, &req, timeout).await?;
            anyhow::ensure!(
                h.error_code == 0,
                "{addr} does not take SASL {} (error {})",
                creds.mechanism.name(),
                h.error_code
            );
            let (mut exchange, mut token) = SaslClient::start(creds);
            loop {
                let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
                let r: SaslAuthenticateResponse = conn
                    .call(ApiKey::SaslAuthenticate, 2, &req, timeout)
                    .await?;
                anyhow::ensure!(
                    r.error_code == 0,
                    "SASL authentication to {addr} as {creds:?} failed: {}",
                    r.error_message.as_deref().unwrap_or("refused")
                );
                match exchange.next(&r.auth_bytes).map_err(anyhow::Error::msg)? {
                    Some(next) => token = next,
                    None => break,
                }
            }
        }
        Ok(conn)
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
