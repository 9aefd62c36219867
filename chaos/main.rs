//! `chaos/run` entry point: `cargo run --release --example chaos -- --duration 60s --seed 7 --out DIR
//! [--faults kill-leader,kill-controller,kill-two,pause-leader,cut-leader,isolate-leader,stop-leader] [--netns]
//! [--acks 1] [--txn]`.

#[path = "mod.rs"]
mod chaos;

use std::path::PathBuf;
use std::time::Duration;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "ms" => Some(Duration::from_millis(n)),
        _ => None,
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("chaos/run --duration 60s --seed N --out DIR [--faults kill-leader,kill-controller,kill-two,pause-leader,cut-leader,isolate-leader,stop-leader] [--netns] [--acks 1] [--txn] [--bin PATH]\n  --netns puts each node in its own network namespace (root, iproute2); cut-leader and isolate-leader need it and are in the default faults only then\n  --acks 1 runs plain acks=1 producers: lost records are then reported, not failures, and zombie_acks (acknowledged by a replaced leader) must be 0\n  --txn adds a transactional consume-transform-produce processor (read_committed, offsets in the transaction, every fifth transaction aborted) and its checkers; the fault kill-txn-coordinator joins the defaults");
        return std::process::ExitCode::SUCCESS;
    }
    let duration = arg(&args, "--duration")
        .and_then(|d| parse_duration(&d))
        .unwrap_or(Duration::from_secs(60));
    let seed = arg(&args, "--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let out = PathBuf::from(arg(&args, "--out").unwrap_or_else(|| "chaos-out".into()));
    let netns = args.iter().any(|a| a == "--netns");
    let default_faults = if netns {
        "kill-leader,kill-controller,kill-two,pause-leader,cut-leader,isolate-leader,stop-leader"
    } else {
        "kill-leader,kill-controller,kill-two,pause-leader,stop-leader"
    };
    let txn = args.iter().any(|a| a == "--txn");
    let default_faults = if txn {
        format!("{default_faults},kill-txn-coordinator")
    } else {
        default_faults.to_string()
    };
    let faults = arg(&args, "--faults")
        .unwrap_or(default_faults)
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let acks = match arg(&args, "--acks").as_deref() {
        None | Some("all") | Some("-1") => -1,
        Some("1") => 1,
        Some(other) => {
            eprintln!("chaos: --acks takes all or 1, not {other}");
            return std::process::ExitCode::from(2);
        }
    };
    let bin = PathBuf::from(arg(&args, "--bin").unwrap_or_else(|| "target/release/strom".into()));
    let opts = chaos::scenario::Options {
        duration,
        seed,
        out,
        faults,
        bin,
        netns,
        acks,
        txn,
        tamper: None,
    };
    match chaos::scenario::run(&opts) {
        Ok(report) => {
            print!("{}", report.summary());
            if report.passed() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chaos: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
