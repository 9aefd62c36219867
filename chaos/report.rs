//! The run's report: per-fault unavailability windows and latency around each fault, the
//! checkers' counts, written as `report.json`, `summary.txt` and a `timeline.svg` picture of
//! throughput and latency with the faults marked.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::checkers::Check;
use super::nemesis::Event;
use super::workload::Ack;

#[derive(Clone, Debug)]
pub struct FaultReport {
    pub fault: String,
    pub at_ms: u64,
    pub nodes: Vec<i32>,
    pub partitions: Vec<i32>,
    /// From the fault to the first acknowledgement of a record sent after it, on the partitions hit.
    pub window_ms: Option<u64>,
    pub latency_ms: Percentiles,
    /// The longest any write to the partitions hit waited for its acknowledgement, of those
    /// sent from 1 s before the fault until it was undone: how long producers stalled.
    pub stall_ms: u64,
}

/// The longest acknowledgement wait of a record to one of `partitions` (all when empty) sent
/// from 1 s before `at` until `until`.
pub fn stall(acks: &[Ack], partitions: &[i32], at: Duration, until: Duration) -> u64 {
    acks.iter()
        .filter(|a| partitions.is_empty() || partitions.contains(&a.partition))
        .filter(|a| a.sent + Duration::from_secs(1) >= at && a.sent < until)
        .map(|a| a.acked.saturating_sub(a.sent).as_millis() as u64)
        .max()
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

pub fn percentiles(mut v: Vec<u64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    Percentiles {
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: v[v.len() - 1],
    }
}

pub struct Report {
    pub seed: u64,
    pub duration: Duration,
    pub acked: usize,
    pub delivery_failures: usize,
    pub checks: Vec<Check>,
    pub faults: Vec<FaultReport>,
    pub latency: Percentiles,
    /// The producers' acks setting (-1: all).
    pub acks: i16,
}

/// Unavailability windows of one fault kind over the run, in ms.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowStats {
    pub fault: String,
    pub count: usize,
    pub min: u64,
    pub median: u64,
    pub p90: u64,
    pub max: u64,
    /// Faults after which no write on the partitions hit was acknowledged before the run ended.
    pub no_write: usize,
}

/// Per fault kind, in order of first appearance: min / median / p90 / max of the windows.
pub fn window_stats(faults: &[FaultReport]) -> Vec<WindowStats> {
    let mut kinds: Vec<String> = Vec::new();
    for f in faults {
        if !kinds.contains(&f.fault) {
            kinds.push(f.fault.clone());
        }
    }
    kinds
        .into_iter()
        .map(|kind| {
            let of_kind: Vec<&FaultReport> = faults.iter().filter(|f| f.fault == kind).collect();
            let mut w: Vec<u64> = of_kind.iter().filter_map(|f| f.window_ms).collect();
            w.sort_unstable();
            let at = |q: f64| {
                w.get(((w.len() as f64 * q).ceil() as usize).clamp(1, w.len().max(1)) - 1)
                    .copied()
                    .unwrap_or(0)
            };
            WindowStats {
                count: of_kind.len(),
                no_write: of_kind.len() - w.len(),
                min: w.first().copied().unwrap_or(0),
                median: at(0.5),
                p90: at(0.9),
                max: w.last().copied().unwrap_or(0),
                fault: kind,
            }
        })
        .collect()
}

fn count(checks: &[Check], name: &str) -> usize {
    checks
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.violations)
        .unwrap_or(0)
}

impl Report {
    pub fn build(
        seed: u64,
        duration: Duration,
        acks: &[Ack],
        failures: usize,
        events: &[Event],
        checks: Vec<Check>,
    ) -> Report {
        let lat = |a: &Ack| a.acked.saturating_sub(a.sent).as_millis() as u64;
        let faults = events
            .iter()
            .map(|e| {
                let hit = |a: &Ack| e.partitions.is_empty() || e.partitions.contains(&a.partition);
                let window = acks
                    .iter()
                    .filter(|a| a.sent > e.at && hit(a))
                    .map(|a| a.acked.saturating_sub(e.at))
                    .min()
                    .map(|d| d.as_millis() as u64);
                let around: Vec<u64> = acks
                    .iter()
                    .filter(|a| {
                        a.sent + Duration::from_secs(2) >= e.at
                            && a.sent <= e.healed_at + Duration::from_secs(2)
                    })
                    .map(lat)
                    .collect();
                FaultReport {
                    fault: e.fault.name().to_string(),
                    at_ms: e.at.as_millis() as u64,
                    nodes: e.nodes.clone(),
                    partitions: e.partitions.clone(),
                    window_ms: window,
                    latency_ms: percentiles(around),
                    stall_ms: stall(acks, &e.partitions, e.at, e.healed_at),
                }
            })
            .collect();
        Report {
            seed,
            duration,
            acked: acks.len(),
            delivery_failures: failures,
            latency: percentiles(acks.iter().map(lat).collect()),
            checks,
            faults,
            acks: -1,
        }
    }

    pub fn passed(&self) -> bool {
        self.checks
            .iter()
            .all(|c| c.violations == 0 || c.informational)
            && self.delivery_failures == 0
            && self.acked > 0
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "seed": self.seed,
            "duration_s": self.duration.as_secs(),
            "acked": self.acked,
            "delivery_failures": self.delivery_failures,
            "lost": count(&self.checks, "lost"),
            "duplicated": count(&self.checks, "duplicated"),
            "reordered": count(&self.checks, "reordered"),
            "served_then_lost": count(&self.checks, "served-then-lost"),
            "group_skipped": count(&self.checks, "group-skipped"),
            "replicas_differ": count(&self.checks, "replicas-differ"),
            "isr_not_full": count(&self.checks, "isr-not-full"),
            "zombie_acks": count(&self.checks, "zombie-acks"),
            "acks": self.acks,
            "passed": self.passed(),
            "latency_ms": {"p50": self.latency.p50, "p99": self.latency.p99, "p999": self.latency.p999, "max": self.latency.max},
            "unavailable_ms_by_fault": window_stats(&self.faults).iter().map(|w| serde_json::json!({
                "fault": w.fault, "count": w.count, "min": w.min, "median": w.median,
                "p90": w.p90, "max": w.max, "no_write_after": w.no_write,
            })).collect::<Vec<_>>(),
            "faults": self.faults.iter().map(|f| serde_json::json!({
                "fault": f.fault,
                "at_ms": f.at_ms,
                "nodes": f.nodes,
                "partitions": f.partitions,
                "unavailable_ms": f.window_ms,
                "stall_ms": f.stall_ms,
                "latency_ms": {"p50": f.latency_ms.p50, "p99": f.latency_ms.p99, "p999": f.latency_ms.p999, "max": f.latency_ms.max},
            })).collect::<Vec<_>>(),
            "checks": self.checks.iter().map(|c| serde_json::json!({
                "name": c.name, "violations": c.violations, "examples": c.examples,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "chaos run: seed {}, {} s, acks={}, {} records acknowledged, {} delivery failures",
            self.seed,
            self.duration.as_secs(),
            if self.acks == -1 {
                "all".to_string()
            } else {
                self.acks.to_string()
            },
            self.acked,
            self.delivery_failures
        );
        let _ = writeln!(
            s,
            "produce latency ms: p50 {} p99 {} p99.9 {} max {}",
            self.latency.p50, self.latency.p99, self.latency.p999, self.latency.max
        );
        let _ = writeln!(s, "unavailable ms by fault: count min median p90 max");
        for w in window_stats(&self.faults) {
            let _ = writeln!(
                s,
                "  {:<16} {:>3} {:>6} {:>6} {:>6} {:>6}{}",
                w.fault,
                w.count,
                w.min,
                w.median,
                w.p90,
                w.max,
                if w.no_write > 0 {
                    format!(" ({} with no write after)", w.no_write)
                } else {
                    String::new()
                }
            );
        }
        for f in &self.faults {
            let window = f
                .window_ms
                .map(|w| format!("{w} ms"))
                .unwrap_or_else(|| "no write after it".into());
            let _ = writeln!(
                s,
                "  {:>7.1}s {:<16} nodes {:?} partitions {:?}: unavailable {window}, stalled {} ms; latency p50 {} p99 {} max {} ms",
                f.at_ms as f64 / 1000.0,
                f.fault,
                f.nodes,
                f.partitions,
                f.stall_ms,
                f.latency_ms.p50,
                f.latency_ms.p99,
                f.latency_ms.max
            );
        }
        for c in &self.checks {
            let _ = writeln!(
                s,
                "  check {:<18} {}",
                c.name,
                if c.violations == 0 {
                    "ok".to_string()
                } else {
                    format!(
                        "{} violations{}, e.g. {:?}",
                        c.violations,
                        if c.informational {
                            " (informational with this acks)"
                        } else {
                            ""
                        },
                        c.examples
                    )
                }
            );
        }
        let _ = writeln!(s, "{}", if self.passed() { "PASSED" } else { "FAILED" });
        s
    }

    /// Throughput (bars, per half second) and p99 latency (line) with faults marked.
    pub fn svg(&self, acks: &[Ack]) -> String {
        let bucket = 500u64;
        let span = self.duration.as_millis() as u64 + 5_000;
        let n = (span / bucket + 1) as usize;
        let mut counts = vec![0u64; n];
        let mut lats: Vec<Vec<u64>> = vec![Vec::new(); n];
        for a in acks {
            let i = ((a.acked.as_millis() as u64) / bucket) as usize;
            if i < n {
                counts[i] += 1;
                lats[i].push(a.acked.saturating_sub(a.sent).as_millis() as u64);
            }
        }
        let (w, h, pad) = (1000.0, 360.0, 40.0);
        let max_count = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        let p99: Vec<u64> = lats.into_iter().map(|l| percentiles(l).p99).collect();
        let max_lat = p99.iter().copied().max().unwrap_or(1).max(1) as f64;
        let x = |ms: u64| pad + (ms as f64 / span as f64) * (w - 2.0 * pad);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{pad}" y="16">acknowledged records per 0.5 s (bars, max {max_count}) and p99 latency (line, max {max_lat} ms); faults in red</text>"#
        );
        let base = h - pad;
        let bw = (w - 2.0 * pad) / n as f64;
        for (i, c) in counts.iter().enumerate() {
            let bh = (*c as f64 / max_count) * (h - 2.0 * pad - 10.0);
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#9ab"/>"##,
                x(i as u64 * bucket),
                base - bh,
                bw.max(1.0),
                bh
            );
        }
        let points: Vec<String> = p99
            .iter()
            .enumerate()
            .map(|(i, l)| {
                format!(
                    "{:.1},{:.1}",
                    x(i as u64 * bucket + bucket / 2),
                    base - (*l as f64 / max_lat) * (h - 2.0 * pad - 10.0)
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="#333" stroke-width="1.2" points="{}"/>"##,
            points.join(" ")
        );
        for f in &self.faults {
            let fx = x(f.at_ms);
            let _ = writeln!(
                s,
                r##"<line x1="{fx:.1}" y1="{pad}" x2="{fx:.1}" y2="{base}" stroke="#c00" stroke-width="1.5"/>"##
            );
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" fill="#c00">{} {:?}</text>"##,
                fx + 3.0,
                pad + 12.0,
                f.fault,
                f.nodes
            );
        }
        let _ = writeln!(
            s,
            r#"<line x1="{pad}" y1="{base}" x2="{}" y2="{base}" stroke="black"/>"#,
            w - pad
        );
        for t in (0..=span / 1000).step_by(10) {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{t}s</text>"#,
                x(t * 1000),
                base + 14.0
            );
        }
        s.push_str("</svg>\n");
        s
    }

    pub fn write(&self, out: &Path, acks: &[Ack]) -> std::io::Result<()> {
        std::fs::create_dir_all(out)?;
        std::fs::write(
            out.join("report.json"),
            serde_json::to_vec_pretty(&self.json()).map_err(std::io::Error::other)?,
        )?;
        std::fs::write(out.join("summary.txt"), self.summary())?;
        std::fs::write(out.join("timeline.svg"), self.svg(acks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(kind: &str, window: Option<u64>) -> FaultReport {
        FaultReport {
            fault: kind.to_string(),
            at_ms: 0,
            nodes: Vec::new(),
            partitions: Vec::new(),
            window_ms: window,
            latency_ms: Percentiles::default(),
            stall_ms: 0,
        }
    }

    #[test]
    fn a_stall_is_the_longest_wait_on_the_partitions_hit_while_the_fault_lasts() {
        let ack = |partition, sent_ms, acked_ms| Ack {
            producer: 0,
            seq: 0,
            partition,
            offset: 0,
            sent: Duration::from_millis(sent_ms),
            acked: Duration::from_millis(acked_ms),
            appended: None,
        };
        let acks = [
            ack(0, 9_500, 9_900),   // sent just before the fault, waited through it: 400
            ack(0, 10_100, 10_350), // 250
            ack(1, 10_000, 12_000), // another partition: not counted
            ack(0, 8_000, 9_000),   // long before the fault: not counted
            ack(0, 13_000, 14_000), // after it was undone: not counted
        ];
        let (at, until) = (Duration::from_secs(10), Duration::from_secs(13));
        assert_eq!(stall(&acks, &[0], at, until), 400);
        assert_eq!(stall(&acks, &[], at, until), 2_000);
        assert_eq!(stall(&acks, &[2], at, until), 0);
    }

    #[test]
    fn windows_are_summarised_per_fault_kind() {
        let mut faults: Vec<FaultReport> = (1..=10)
            .map(|i| fault("kill-leader", Some(i * 100)))
            .collect();
        faults.push(fault("pause-leader", Some(3_000)));
        faults.push(fault("pause-leader", None));
        let stats = window_stats(&faults);
        assert_eq!(stats.len(), 2);
        let kill = &stats[0];
        assert_eq!(kill.fault, "kill-leader");
        assert_eq!(
            (
                kill.count,
                kill.min,
                kill.median,
                kill.p90,
                kill.max,
                kill.no_write
            ),
            (10, 100, 500, 900, 1_000, 0)
        );
        let pause = &stats[1];
        assert_eq!((pause.count, pause.median, pause.no_write), (2, 3_000, 1));
    }
}
