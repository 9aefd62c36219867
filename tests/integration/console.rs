//! The web console, loaded in headless Chromium (Debian's `chromium`, which `.ci/run`
//! installs) from a broker of a three-node cluster: the page as the browser built it shows the
//! three brokers, every partition of a topic with the leader the metadata names, and a
//! consumer group's lag.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::harness::{consumer, flush, producer, send_to, strom_cli as strom, Cluster};

/// Debian names it `chromium`; elsewhere it may be one of the others.
fn chromium() -> String {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|b| b.to_string())
        .expect("headless Chromium is needed for the console test: apt-get install chromium")
}

/// The page's DOM after its scripts ran (Chromium's virtual time lets the fetches finish).
fn rendered(url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=8000",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text inside the first element after `marker` with the given class, e.g. a cell.
fn cell_after<'a>(dom: &'a str, marker: &str, class: &str) -> Option<&'a str> {
    let rest = &dom[dom.find(marker)?..];
    let open = format!("class=\"{class}\">");
    let start = rest.find(&open)? + open.len();
    let end = rest[start..].find('<')?;
    Some(&rest[start..start + end])
}

#[test]
fn the_console_shows_brokers_partition_leaders_and_group_lag_in_a_browser() {
    let mut cluster = Cluster::new(3, &[]);
    let boot = crate::cluster::start_three(&mut cluster);
    let (success, out, err) = strom(
        &[
            "topic",
            "create",
            "shop",
            "-p",
            "3",
            "-r",
            "3",
            "--bootstrap",
            &boot,
        ],
        "",
    );
    assert!(success, "{out}{err}");
    let p = producer(&boot, &[("acks", "all")]);
    for i in 0..300u64 {
        send_to(&p, "shop", Some((i % 3) as i32), i, b"order");
    }
    flush(&p);
    // Group "billing" has read 40 of partition 0's 100 records and nothing else: lag 60 there.
    let c = consumer(&boot, &[("group.id", "billing")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("shop", 0, Offset::Offset(40))
        .expect("tpl");
    c.commit(&tpl, CommitMode::Sync).expect("commit");

    let leaders: BTreeMap<i32, i32> = c
        .fetch_metadata(Some("shop"), Duration::from_secs(10))
        .expect("metadata")
        .topics()[0]
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader()))
        .collect();
    let url = format!("http://127.0.0.1:{}/", cluster.node(2).admin_port);
    let dom = rendered(&url);

    for id in 1..=3 {
        assert!(
            dom.contains(&format!("data-broker=\"{id}\"")),
            "broker {id} missing from the page:\n{dom}"
        );
    }
    assert!(dom.contains("viewed through broker 2"), "{dom}");
    let shop = &dom[dom
        .find("data-topic=\"shop\"")
        .expect("the topic on the page")..];
    for (partition, leader) in &leaders {
        let shown = cell_after(
            shop,
            &format!("data-partition=\"{partition}\""),
            "num leader",
        );
        assert_eq!(
            shown,
            Some(leader.to_string().as_str()),
            "partition {partition}'s leader"
        );
    }
    let lag = cell_after(&dom, "data-group=\"billing\"", "group-lag");
    assert_eq!(lag, Some("60"), "the group's lag:\n{dom}");
}
