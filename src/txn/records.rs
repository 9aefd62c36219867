//! The records of `__transaction_state`, in Kafka's layout (key version 0: the transactional
//! id; value version 0: producer id and epoch, timeout, state, the partitions by topic, last
//! update and start times), so Kafka tooling reads them. A record with no value is a
//! tombstone (an expired transactional id). Pure code: bytes in, values out.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};

use super::state::{TxnMeta, TxnState};
use crate::group::records::{get_i16, get_i32, get_i64, get_str, put_str, MAX_STR};

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub fn decode_key(mut b: &[u8]) -> Option<String> {
    match get_i16(&mut b)? {
        0 => get_str(&mut b),
        _ => None,
    }
}

pub fn encode_value(m: &TxnMeta) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &m.partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(0);
    b.put_i64(m.producer_id);
    b.put_i16(m.epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state as i8);
    b.put_i32(by_topic.len() as i32);
    for (topic, parts) in by_topic {
        put_str(&mut b, topic);
        b.put_i32(parts.len() as i32);
        for p in parts {
            b.put_i32(p);
        }
    }
    b.put_i64(m.update_ms);
    b.put_i64(m.start_ms);
    b.freeze()
}

pub fn decode_value(mut b: &[u8]) -> Option<TxnMeta> {
    let version = get_i16(&mut b)?;
    if version != 0 {
        return None;
    }
    let producer_id = get_i64(&mut b)?;
    let epoch = get_i16(&mut b)?;
    let timeout_ms = get_i32(&mut b)?;
    let state = TxnState::from_code(*b.first()? as i8)?;
    b = &b[1..];
    let topics = get_i32(&mut b)?;
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_str(&mut b)?;
        let n = get_i32(&mut b)?;
        if n < 0 || n as usize > b.len() / 4 {
            return None;
        }
        for _ in 0..n {
            partitions.insert((topic.clone(), get_i32(&mut b)?));
        }
    }
    let update_ms = get_i64(&mut b)?;
    let start_ms = get_i64(&mut b)?;
    Some(TxnMeta {
        producer_id,
        epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        update_ms,
        last_epoch: -1,
    })
}

/// Whether a transactional id fits the records' i16 string length.
pub fn id_fits(transactional_id: &str) -> bool {
    !transactional_id.is_empty() && transactional_id.len() <= MAX_STR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip_and_garbage_is_refused() {
        let m = TxnMeta {
            producer_id: 42,
            epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [
                ("a".to_string(), 1),
                ("a".to_string(), 0),
                ("b".to_string(), 2),
            ]
            .into_iter()
            .collect(),
            start_ms: 10,
            update_ms: 20,
            last_epoch: -1,
        };
        assert_eq!(decode_value(&encode_value(&m)), Some(m.clone()));
        assert_eq!(decode_key(&encode_key("tx-1")), Some("tx-1".to_string()));
        let v = encode_value(&m);
        for cut in 0..v.len() {
            assert_eq!(decode_value(&v[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode_key(&[0, 9]), None);
    }
}
