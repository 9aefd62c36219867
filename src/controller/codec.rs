//! How the quorum's Raft messages and snapshots are encoded: bincode — compact and binary (a
//! topic id is 16 bytes, not a 38-character string; snapshot bytes travel as bytes, not as a
//! JSON array of numbers) — with a bound on what one decode may allocate, so a peer's damaged
//! or hostile message cannot claim gigabytes. Admin calls between brokers stay JSON (small, and
//! readable when debugging). Snapshots written by earlier versions (JSON) are still read.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The most one snapshot may decode to: far beyond any image strom can hold today, but a
/// length prefix claiming more is refused before anything is allocated.
const MAX_SNAPSHOT: u64 = 4 << 30;

fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new().with_limit(limit)
}

fn failed(what: &str, e: bincode::Error) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}

pub fn encode<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    options(u64::MAX)
        .serialize(value)
        .map_err(|e| failed("cannot encode", e))
}

/// A Raft message (at most `super::MAX_RPC_MESSAGE` bytes, as the transport allows).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::io::Result<T> {
    options(super::MAX_RPC_MESSAGE as u64)
        .deserialize(bytes)
        .map_err(|e| failed("bad raft payload", e))
}

/// A snapshot or stored state, binary or (written before this format) JSON.
pub fn decode_snapshot<T: DeserializeOwned>(bytes: &[u8]) -> std::io::Result<T> {
    if bytes.first() == Some(&b'{') {
        if let Ok(v) = serde_json::from_slice(bytes) {
            return Ok(v);
        }
    }
    options(MAX_SNAPSHOT)
        .deserialize(bytes)
        .map_err(|e| failed("bad snapshot", e))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::{MetadataImage, MetadataRecord};
    use crate::types::TopicId;

    /// An image of `topics` topics with ten three-replica partitions each.
    fn image(topics: u128) -> MetadataImage {
        (0..topics).fold(MetadataImage::default(), |img, i| {
            img.apply(&MetadataRecord::CreateTopic {
                name: format!("topic-{i}"),
                id: TopicId(uuid::Uuid::from_u128(i + 1)),
                assignments: vec![vec![1, 2, 3]; 10],
                configs: BTreeMap::new(),
            })
            .0
        })
    }

    #[test]
    fn images_round_trip_and_are_much_smaller_than_json() {
        let img = image(500);
        let binary = encode(&img).expect("encode");
        let json = serde_json::to_vec(&img).expect("json");
        println!(
            "500 topics x 10 partitions: {} bytes binary, {} JSON",
            binary.len(),
            json.len()
        );
        let back: MetadataImage = decode_snapshot(&binary).expect("decode");
        assert_eq!(back, img);
        assert!(
            binary.len() * 3 < json.len(),
            "{} binary bytes against {} of JSON",
            binary.len(),
            json.len()
        );
        // A snapshot stored as JSON by an earlier version still reads.
        let old: MetadataImage = decode_snapshot(&json).expect("old format");
        assert_eq!(old, img);
    }

    #[test]
    fn a_message_claiming_more_than_the_transport_carries_is_refused_not_allocated() {
        // A Vec<u8> whose varint length prefix claims 2^40 bytes.
        let mut hostile = vec![0xfd];
        hostile.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode::<Vec<u8>>(&hostile).is_err());
        assert!(decode_snapshot::<Vec<u8>>(&hostile).is_err());
        assert!(decode::<Vec<u8>>(&[]).is_err());
    }
}
