//! Kafka wire framing, request headers and the table of supported API versions.
//!
//! The message codecs come from the `kafka-protocol` crate; this module decides which keys and
//! versions strom accepts (`SUPPORTED`, which is exactly what ApiVersions advertises), splits a
//! frame into header and body, and encodes a response with the right header version.

pub mod fetch_response;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// Every API strom serves, with the version range it implements.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
];

pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|s| s.0 == key).map(|s| (s.1, s.2))
}

/// Why a frame cannot be served; every case closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame too short for a request header")]
    Short,
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("malformed request header: {0}")]
    BadHeader(String),
    #[error("malformed {key:?} v{version} request: {err}")]
    BadBody {
        key: ApiKey,
        version: i16,
        err: String,
    },
    #[error("{key:?} v{version} is not supported")]
    UnsupportedVersion { key: ApiKey, version: i16 },
}

/// A request whose header is parsed; the body is still raw.
pub struct Parsed {
    pub key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// Reads the API key and version (the first four bytes) without parsing further.
pub fn peek_key_version(frame: &[u8]) -> Result<(ApiKey, i16), FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Short);
    }
    let raw = i16::from_be_bytes([frame[0], frame[1]]);
    let key = ApiKey::try_from(raw).map_err(|_| FrameError::UnknownApiKey(raw))?;
    Ok((key, i16::from_be_bytes([frame[2], frame[3]])))
}

/// Parses the request header for a supported key and version. The version must already be
/// known to be supported (request header versions depend on it).
pub fn parse(frame: Bytes) -> Result<Parsed, FrameError> {
    let (key, version) = peek_key_version(&frame)?;
    let mut body = frame;
    let header_version = key.request_header_version(version);
    let header = RequestHeader::decode(&mut body, header_version)
        .map_err(|e| FrameError::BadHeader(e.to_string()))?;
    Ok(Parsed {
        key,
        version,
        header,
        body,
    })
}

/// Decodes a request body at `version`; trailing garbage is tolerated as Kafka does not check it.
pub fn decode<R: Decodable>(key: ApiKey, body: &mut Bytes, version: i16) -> Result<R, FrameError> {
    R::decode(body, version).map_err(|e| FrameError::BadBody {
        key,
        version,
        err: e.to_string(),
    })
}

/// Encodes a whole response frame: size, response header (v0 for ApiVersions, v1 for other
/// flexible versions), body.
pub fn encode_response<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, FrameError> {
    let header_version = key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let bad = |e: anyhow::Error| FrameError::BadBody {
        key,
        version,
        err: format!("cannot encode response: {e}"),
    };
    let size = header.compute_size(header_version).map_err(bad)?
        + body.compute_size(version).map_err(bad)?;
    let mut buf = BytesMut::with_capacity(size + 4);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version).map_err(bad)?;
    body.encode(&mut buf, version).map_err(bad)?;
    Ok(buf.freeze())
}

/// Encodes a whole request frame (size, header, body) as a client sends it.
pub fn encode_request<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
    body: &R,
) -> anyhow::Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str(
            client_id,
        )));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, key.request_header_version(version))?;
    body.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Reads the `size`-byte body of a frame into spare capacity (zero-filling a buffer first
/// showed up in profiles, as much as the copy itself). Fails if the stream ends inside it.
pub async fn read_body<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    size: usize,
) -> std::io::Result<BytesMut> {
    use tokio::io::AsyncReadExt;
    let mut body = BytesMut::with_capacity(size);
    while body.len() < size {
        let left = size - body.len();
        if rd.read_buf(&mut (&mut body).limit(left)).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(body)
}

/// Decodes a response frame body (after the size): returns the correlation id and the body.
pub fn decode_response<R: Decodable>(
    key: ApiKey,
    version: i16,
    mut body: Bytes,
) -> anyhow::Result<(i32, R)> {
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version))?;
    Ok((header.correlation_id, R::decode(&mut body, version)?))
}

/// A response ready to write: one frame in memory, or a frame whose record data is sent
/// straight from segment files (sendfile) between in-memory pieces.
pub enum Reply {
    Frame(Bytes),
    Spliced(Vec<Part>),
}

pub enum Part {
    Bytes(Bytes),
    File {
        file: std::sync::Arc<std::fs::File>,
        offset: u64,
        len: usize,
    },
}

impl Part {
    /// Bytes this part puts on the wire.
    pub fn wire_len(&self) -> usize {
        match self {
            Part::Bytes(b) => b.len(),
            Part::File { len, .. } => *len,
        }
    }
}

impl From<Bytes> for Reply {
    fn from(b: Bytes) -> Reply {
        Reply::Frame(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsResponse;

    #[test]
    fn supported_ranges_fit_the_codecs() {
        for (key, min, max) in SUPPORTED {
            let r = key.valid_versions();
            assert!(
                *min >= r.min && *max <= r.max,
                "{key:?} {min}..{max} outside {r}"
            );
        }
    }

    #[test]
    fn api_versions_response_uses_header_v0() {
        let body = ApiVersionsResponse::default();
        let frame = encode_response(ApiKey::ApiVersions, 3, 42, &body).expect("encode");
        // size, correlation id, then the body's error code: no tagged-field byte in between.
        assert_eq!(&frame[4..8], &42i32.to_be_bytes());
        assert_eq!(&frame[8..10], &0i16.to_be_bytes());
    }

    #[test]
    fn unknown_key_and_short_frames_are_refused() {
        assert!(matches!(
            peek_key_version(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1]),
            Err(FrameError::UnknownApiKey(_))
        ));
        assert!(matches!(peek_key_version(&[0, 1]), Err(FrameError::Short)));
    }
}
