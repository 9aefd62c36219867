#!/bin/bash
# Run from the repository root after `cargo build --release --bin strom --example bench`.
# Cleaner throughput and workload 1 beside it, one run. Broker A (cleaner off): fill a
# compacted topic with 3 GB over 100,000 keys, then W1 for 10 s. Broker B (same data, cleaner
# on): W1 for 10 s started as B comes up, so it runs while the cleaner cleans; then W1 again.
set -u
cd "$(dirname "$0")/.."
D=${CLEANER_BENCH_DIR:-/tmp/cleaner-bench}/data; rm -rf $D; mkdir -p $(dirname $D)
S=target/release/strom; B=target/release/examples/bench
start() { RUST_LOG=info $S --set log.dirs=$D "$@" > $(dirname $D)/broker-$N.log 2>&1 & PID=$!; sleep 1; }
w1() { echo "-- W1 $1 starting $(date +%T.%N | cut -c1-12)"; $B --topic w1-$1 --duration 10s --record-size 1024 --partitions 1 --acks 1 --linger-ms 5 --no-consume --latency-by-second 2>/dev/null | grep -E "^produce|second"; }
N=a; start --set log.cleaner.enable=false
$B --topic compacted --keys 100000 --records 3000000 --record-size 1024 --partitions 1 --acks 1 --linger-ms 5 --no-consume --topic-config cleanup.policy=compact --topic-config segment.bytes=104857600 2>/dev/null | grep -E "^produce"
sync; sleep 5
w1 before
du -sh $D/compacted-0
kill -TERM $PID; wait $PID
sync; sleep 5
N=b; start
w1 during
grep "cleaned log" $(dirname $D)/broker-b.log
for i in $(seq 1 60); do grep -q "cleaned log" $(dirname $D)/broker-b.log && break; sleep 1; done
sync; sleep 5
w1 after
du -sh $D/compacted-0
kill -TERM $PID; wait $PID
