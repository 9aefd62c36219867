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

/// `max.connections.per.ip.overrides` gives named addresses their own limit: 127.0.0.2 may open
/// four connections where every other address (127.0.0.3 here) may open two.
#[test]
fn an_address_override_replaces_the_per_ip_limit_for_that_address() {
    let b = Broker::start(&[
        "max.connections.per.ip=2",
        "max.connections.per.ip.overrides=127.0.0.2:4",
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A connection from `source` that the broker answered (ApiVersions v0).
    let answered = |source: &str| -> Option<tokio::net::TcpStream> {
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(format!("{source}:0").parse().ok()?).ok()?;
            let addr = format!("127.0.0.1:{}", b.port).parse().ok()?;
            let mut s = socket.connect(addr).await.ok()?;
            let frame = [0u8, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
            s.write_all(&frame).await.ok()?;
            let mut len = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len))
                .await
                .ok()?
                .ok()?;
            let size = u32::from_be_bytes(len) as usize;
            let mut body = vec![0u8; size];
            s.read_exact(&mut body).await.ok()?;
            Some(s)
        })
    };
    let mut open = Vec::new();
    for i in 0..4 {
        open.push(answered("127.0.0.2").unwrap_or_else(|| panic!("127.0.0.2's connection {i}")));
    }
    assert!(
        answered("127.0.0.2").is_none(),
        "its fifth is over its override"
    );
    for i in 0..2 {
        open.push(answered("127.0.0.3").unwrap_or_else(|| panic!("127.0.0.3's connection {i}")));
    }
    assert!(
        answered("127.0.0.3").is_none(),
        "another address keeps max.connections.per.ip"
    );
}

/// `queued.max.requests=1`: four connections each pipeline 200 requests at once; every one is
/// answered in order (a place in the queue that was never given back would stop every reader
/// for good), and none is left queued.
#[test]
fn a_queue_of_one_request_serves_pipelined_connections_and_empties() {
    use std::io::{Read, Write};
    let b = Broker::start(&["queued.max.requests=1"]);
    let port = b.port;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let mut frames = Vec::new();
                for corr in 0..200i32 {
                    // ApiVersions v0 with correlation id `corr`, no client id.
                    frames.extend_from_slice(&10i32.to_be_bytes());
                    frames.extend_from_slice(&[0, 18, 0, 0]);
                    frames.extend_from_slice(&corr.to_be_bytes());
                    frames.extend_from_slice(&[0xff, 0xff]);
                }
                s.write_all(&frames).expect("write");
                for corr in 0..200i32 {
                    let mut len = [0u8; 4];
                    s.read_exact(&mut len).expect("an answer");
                    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
                    s.read_exact(&mut body).expect("its body");
                    assert_eq!(&body[..4], &corr.to_be_bytes(), "answers in order");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("every request answered");
    }
    assert_eq!(
        crate::metrics::metric(&b, "strom_requests_queued"),
        Some(0.0)
    );
}
