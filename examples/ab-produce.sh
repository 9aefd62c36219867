#!/bin/bash
# One produce run against fresh brokers of binary BIN, for before/after pairs with farm-bench:
#   farm-bench -n 6 --vs "examples/ab-produce.sh w1 OLD_BIN old.txt" -- examples/ab-produce.sh w1 NEW_BIN new.txt
# MODE w1: one broker, 1,000,000 × 1 KiB, acks=1, one partition, linger 5 ms (workload 1).
# MODE replicated: `strom dev` with three nodes, a 1-partition RF=3 topic, 500,000 × 1 KiB, acks=all.
# Appends bench's produce line to OUT. Run from the repository root after
# `cargo build --release --example bench`.
set -u
MODE=$1; S=$(realpath "$2"); OUT=$(realpath -m "$3")
B=$PWD/target/release/examples/bench
D=$(mktemp -d /tmp/ab-produce-XXXX)
cd "$D"
if [ "$MODE" = w1 ]; then
  $S --set log.dirs=$D/data --set listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093 \
     --set advertised.listeners=PLAINTEXT://127.0.0.1:29092 --set controller.quorum.voters=1@127.0.0.1:29093 \
     --set admin.http.listener= > $D/log 2>&1 &
  P=$!
  for i in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/29092) 2>/dev/null && break; sleep 0.05; done
  $B --bootstrap 127.0.0.1:29092 --topic w1 --records 1000000 --record-size 1024 --partitions 1 --acks 1 --linger-ms 5 --no-consume 2>/dev/null | grep -E "^produce" >> "$OUT"
else
  RUST_LOG=error $S dev --nodes 3 --base-port 31092 < /dev/null > $D/log 2>&1 &
  P=$!
  for i in $(seq 1 200); do grep -q "ready in" $D/log && break; sleep 0.05; done
  $S topic create w4 -p 1 -r 3 --bootstrap 127.0.0.1:31092 > /dev/null
  $B --bootstrap 127.0.0.1:31092 --topic w4 --records 500000 --record-size 1024 --partitions 1 --acks all --linger-ms 5 --no-consume 2>/dev/null | grep -E "^produce" >> "$OUT"
fi
kill -TERM $P; wait $P
cd /; rm -rf "$D"
