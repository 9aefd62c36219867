//! The short chaos scenario that CI runs: about a minute of idempotent acks=all load on an RF=3
//! topic while the nemesis kills a partition leader and the controller. Zero lost, duplicated or
//! reordered records; the failover windows are printed.

use std::time::Duration;

use crate::chaos::scenario::{run, Options};

#[test]
fn chaos_kill_leader_and_controller_loses_nothing() {
    let _quiet = crate::harness::timing_sensitive();
    let out = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        duration: Duration::from_secs(45),
        seed: 7,
        out: out.path().to_path_buf(),
        faults: vec![
            "kill-leader".into(),
            "kill-controller".into(),
            "pause-leader".into(),
        ],
        bin: env!("CARGO_BIN_EXE_strom").into(),
    };
    let report = run(&opts).expect("chaos run");
    println!("{}", report.summary());
    let json = report.json();
    assert_eq!(json["lost"], 0, "{}", report.summary());
    assert_eq!(json["duplicated"], 0, "{}", report.summary());
    assert_eq!(json["reordered"], 0, "{}", report.summary());
    assert_eq!(json["group_skipped"], 0, "{}", report.summary());
    assert!(
        report.faults.len() >= 3,
        "the nemesis struck {} times",
        report.faults.len()
    );
    assert!(report.passed(), "{}", report.summary());
    for f in ["report.json", "summary.txt", "timeline.svg"] {
        assert!(out.path().join(f).exists(), "{f} written");
    }
}
