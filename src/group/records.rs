//! The records of `__consumer_offsets`, in Kafka's own layout so Kafka tooling can read them:
//! an offset commit (key version 1: group, topic, partition; value version 3: offset, leader
//! epoch, metadata, commit time) and a group's metadata (key version 2: group; value version 3:
//! protocol, generation, leader, members with their subscriptions and assignments). A record
//! with no value is a tombstone. Pure code: bytes in, values out.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A member as stored with its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's membership as of its last completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

/// What a record's key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group(String),
}

impl Key {
    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. } | Key::Group(group) => group,
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                b.put_i16(1);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            Key::Group(group) => {
                b.put_i16(2);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    /// `None` for a key this broker does not know (skipped, as Kafka skips unknown versions).
    pub fn decode(mut b: &[u8]) -> Option<Key> {
        match get_i16(&mut b)? {
            0 | 1 => Some(Key::Offset {
                group: get_str(&mut b)?,
                topic: get_str(&mut b)?,
                partition: get_i32(&mut b)?,
            }),
            2 => Some(Key::Group(get_str(&mut b)?)),
            _ => None,
        }
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        b.put_i64(self.offset);
        b.put_i32(self.leader_epoch);
        put_str(&mut b, &self.metadata);
        b.put_i64(self.commit_timestamp);
        b.freeze()
    }

    pub fn decode(mut b: &[u8]) -> Option<OffsetValue> {
        let version = get_i16(&mut b)?;
        let offset = get_i64(&mut b)?;
        let leader_epoch = if version >= 3 { get_i32(&mut b)? } else { -1 };
        let metadata = get_str(&mut b)?;
        let commit_timestamp = get_i64(&mut b)?;
        Some(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_str(&mut b, &self.protocol_type);
        b.put_i32(self.generation);
        put_opt_str(&mut b, self.protocol.as_deref());
        put_opt_str(&mut b, self.leader.as_deref());
        b.put_i64(self.state_timestamp);
        b.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut b, &m.member_id);
            put_opt_str(&mut b, m.instance_id.as_deref());
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_i32(m.rebalance_timeout_ms);
            b.put_i32(m.session_timeout_ms);
            put_bytes(&mut b, &m.subscription);
            put_bytes(&mut b, &m.assignment);
        }
        b.freeze()
    }

    pub fn decode(mut b: &[u8]) -> Option<GroupValue> {
        let version = get_i16(&mut b)?;
        if !(0..=3).contains(&version) {
            return None;
        }
        let protocol_type = get_str(&mut b)?;
        let generation = get_i32(&mut b)?;
        let protocol = get_opt_str(&mut b)?;
        let leader = get_opt_str(&mut b)?;
        let state_timestamp = if version >= 2 { get_i64(&mut b)? } else { -1 };
        let n = get_i32(&mut b)?.max(0) as usize;
        let mut members = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let member_id = get_str(&mut b)?;
            let instance_id = if version >= 3 {
                get_opt_str(&mut b)?
            } else {
                None
            };
            let client_id = get_str(&mut b)?;
            let client_host = get_str(&mut b)?;
            let rebalance_timeout_ms = if version >= 1 { get_i32(&mut b)? } else { -1 };
            let session_timeout_ms = get_i32(&mut b)?;
            members.push(StoredMember {
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                    session_timeout_ms
                } else {
                    rebalance_timeout_ms
                },
                session_timeout_ms,
                subscription: get_bytes(&mut b)?,
                assignment: get_bytes(&mut b)?,
            });
        }
        Some(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp,
            members,
        })
    }
}

/// The topics a member of a `consumer` group subscribes to (ConsumerProtocolSubscription:
/// version, then an array of topic names; the rest is not needed here).
pub fn subscribed_topics(mut b: &[u8]) -> Option<Vec<String>> {
    let _version = get_i16(&mut b)?;
    let n = get_i32(&mut b)?.max(0) as usize;
    let mut topics = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        topics.push(get_str(&mut b)?);
    }
    Some(topics)
}

/// The partitions in a `consumer` protocol assignment (ConsumerProtocolAssignment: version,
/// then topics each with partitions).
pub fn assigned_partitions(mut b: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if b.is_empty() {
        return Some(Vec::new());
    }
    let _version = get_i16(&mut b)?;
    let n = get_i32(&mut b)?.max(0) as usize;
    let mut out = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let topic = get_str(&mut b)?;
        let k = get_i32(&mut b)?.max(0) as usize;
        let mut parts = Vec::with_capacity(k.min(4096));
        for _ in 0..k {
            parts.push(get_i32(&mut b)?);
        }
        out.push((topic, parts));
    }
    Some(out)
}

/// The longest string a record holds (an i16 length). Callers check before writing: a
/// longer one would be cut here rather than misread on the next load.
pub const MAX_STR: usize = i16::MAX as usize;

/// The largest char boundary of `s` at or below `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub(crate) fn put_str(b: &mut BytesMut, s: &str) {
    let s = &s[..floor_char_boundary(s, MAX_STR)];
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

pub(crate) fn get_i16(b: &mut &[u8]) -> Option<i16> {
    (b.remaining() >= 2).then(|| b.get_i16())
}

pub(crate) fn get_i32(b: &mut &[u8]) -> Option<i32> {
    (b.remaining() >= 4).then(|| b.get_i32())
}

pub(crate) fn get_i64(b: &mut &[u8]) -> Option<i64> {
    (b.remaining() >= 8).then(|| b.get_i64())
}

fn take(b: &mut &[u8], n: usize) -> Option<Vec<u8>> {
    if b.remaining() < n {
        return None;
    }
    let v = b[..n].to_vec();
    b.advance(n);
    Some(v)
}

fn get_opt_str(b: &mut &[u8]) -> Option<Option<String>> {
    let n = get_i16(b)?;
    if n < 0 {
        return Some(None);
    }
    String::from_utf8(take(b, n as usize)?).ok().map(Some)
}

pub(crate) fn get_str(b: &mut &[u8]) -> Option<String> {
    get_opt_str(b).map(Option::unwrap_or_default)
}

fn get_bytes(b: &mut &[u8]) -> Option<Bytes> {
    let n = get_i32(b)?;
    if n < 0 {
        return Some(Bytes::new());
    }
    take(b, n as usize).map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let k = Key::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        assert_eq!(Key::decode(&k.encode()), Some(k));
        let g = Key::Group("payments".into());
        assert_eq!(Key::decode(&g.encode()), Some(g));
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        assert_eq!(OffsetValue::decode(&v.encode()), Some(v));
        let gv = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp: 9,
            members: vec![StoredMember {
                member_id: "m-1".into(),
                instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(&gv.encode()), Some(gv));
    }

    #[test]
    fn truncated_or_unknown_input_is_refused_not_panicked() {
        let v = OffsetValue {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 0,
        }
        .encode();
        for cut in 0..v.len() {
            assert_eq!(OffsetValue::decode(&v[..cut]), None);
        }
        assert_eq!(Key::decode(&[0, 9, 0, 1, b'g']), None);
        assert_eq!(Key::decode(&[]), None);
    }

    #[test]
    fn reads_consumer_protocol_subscription_and_assignment() {
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(2);
        put_str(&mut b, "a");
        put_str(&mut b, "b");
        b.put_i32(-1);
        assert_eq!(subscribed_topics(&b), Some(vec!["a".into(), "b".into()]));
        let mut a = BytesMut::new();
        a.put_i16(0);
        a.put_i32(1);
        put_str(&mut a, "a");
        a.put_i32(2);
        a.put_i32(0);
        a.put_i32(3);
        assert_eq!(
            assigned_partitions(&a),
            Some(vec![("a".into(), vec![0, 3])])
        );
    }
}
