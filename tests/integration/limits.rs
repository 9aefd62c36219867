//! A broker under many connections: 10,000 idle ones cost little memory and do not stop it
//! serving a producer and a consumer; `max.connections` turns the one over the limit away.

use std::net::TcpStream;
use std::time::Duration;

use rdkafka::producer::Producer;

use crate::harness::{consume_all, flush, producer, send, Broker};

/// The broker's resident memory now (VmRSS), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[test]
fn ten_thousand_idle_connections_cost_little_and_the_broker_keeps_serving() {
    let _quiet = crate::harness::timing_sensitive();
    let b = Broker::start(&[]);
    let pid = b.pid().expect("pid");
    let before = rss(pid);
    let idle: Vec<TcpStream> = (0..10_000)
        .map(|i| {
            TcpStream::connect(("127.0.0.1", b.port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    // Every one accepted (the accept loop keeps up) before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss(pid);
    let per_connection = idle_rss.saturating_sub(before) / 10_000;
    let p = producer(&b.bootstrap(), &[("acks", "all")]);
    for id in 0..2_000u64 {
        send(&p, "busy", id, format!("record {id}").as_bytes());
    }
    flush(&p);
    assert_eq!(p.context().acks.lock().expect("acks").len(), 2_000);
    let got = consume_all(&b.bootstrap(), "busy", 1, 2_000, Duration::from_secs(30));
    assert_eq!(got.len(), 2_000);
    let with = rss(pid);
    eprintln!(
        "RSS {} MiB before, {} MiB with 10,000 idle connections ({per_connection} bytes each), {} MiB after producing and consuming",
        before >> 20,
        idle_rss >> 20,
        with >> 20
    );
    // Measured 2026-12-01 (debug build): see ARCHITECTURE's tests list for the figures.
    assert!(
        per_connection < 8 << 10,
        "{per_connection} bytes per idle connection"
    );
    assert!(with < 200 << 20, "RSS {} MiB", with >> 20);
    drop(idle);
}

#[test]
fn max_connections_turns_the_one_over_the_limit_away() {
    use std::io::{Read, Write};
    let b = Broker::start(&["max.connections=500"]);
    let ask = |s: &mut TcpStream| -> bool {
        // ApiVersions v0, correlation id 1, no client id.
        let frame = [0u8, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        if s.write_all(&frame).is_err() {
            return false;
        }
        let mut len = [0u8; 4];
        s.read_exact(&mut len).is_ok()
    };
    let mut open: Vec<TcpStream> = Vec::new();
    for i in 0..500 {
        let mut s = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
        assert!(ask(&mut s), "connection {i} is within max.connections");
        open.push(s);
    }
    let mut over = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    assert!(!ask(&mut over), "the 501st connection is closed");
    open.pop();
    crate::harness::wait_until("a freed place", Duration::from_secs(5), || {
        let mut again = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
        ask(&mut again)
    });
}
