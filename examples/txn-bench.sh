#!/bin/bash
# One produce run on a fresh three-node `strom dev` cluster, idempotent or transactional, for
# side-by-side pairs with farm-bench:
#   farm-bench -n 5 --vs "examples/txn-bench.sh idempotent idem.txt" -- examples/txn-bench.sh txn txn.txt
# Both: a 6-partition RF=3 topic, 500,000 × 1 KiB, acks=all, linger 5 ms, then the records read
# back by a read_committed consumer (librdkafka's default isolation). MODE idempotent:
# enable.idempotence=true. MODE txn: a transactional producer committing every 100 ms.
# Appends bench's produce and consume lines to OUT. Run from the repository root after
# `cargo build --release --bin strom --example bench`.
set -u
MODE=$1; OUT=$(realpath -m "$2")
S=$PWD/target/release/strom
B=$PWD/target/release/examples/bench
D=$(mktemp -d /tmp/txn-bench-XXXX)
cd "$D"
RUST_LOG=error $S dev --nodes 3 --base-port 33092 < /dev/null > $D/log 2>&1 &
P=$!
for i in $(seq 1 200); do grep -q "ready in" $D/log && break; sleep 0.05; done
$S topic create tx -p 6 -r 3 --bootstrap 127.0.0.1:33092 > /dev/null
if [ "$MODE" = txn ]; then
  EXTRA="--transaction-ms 100"
else
  EXTRA="-X enable.idempotence=true"
fi
$B --bootstrap 127.0.0.1:33092 --topic tx --records 500000 --record-size 1024 --partitions 6 \
   --acks all --linger-ms 5 $EXTRA 2>/dev/null | grep -E "^(produce|consume)" | sed "s/^/$MODE /" >> "$OUT"
kill -TERM $P; wait $P
cd /; rm -rf "$D"
