#!/bin/bash
# Run from the repository root after `cargo build --release --bin strom --example bench`.
# Moving partitions onto a new broker, with and without a throttle: a three-node `strom dev`
# cluster gets a 6-partition RF=3 topic of ~600 MB (bench, 1 KiB records, acks=all); a fourth
# broker (process.roles=broker) joins; `strom cluster rebalance --execute` moves its share of
# the 18 replicas onto it — once with `--throttle $RATE`, and once, after a decommission of
# broker 4 moved them back, without. Prints each run's time and
# the bytes the new broker fetched through the throttle (its /metrics).
set -u
cd "$(dirname "$0")/.."
W=${REBALANCE_BENCH_DIR:-/tmp/rebalance-bench}; rm -rf $W; mkdir -p $W
S=$PWD/target/release/strom; B=$PWD/target/release/examples/bench
RATE=${RATE:-20971520}
RECORDS=${RECORDS:-600000}
BOOT=127.0.0.1:9092
(cd $W && RUST_LOG=warn $S dev --nodes 3 --clean < /dev/null > dev.log 2>&1 &)
sleep 6
$S topic create moving -p 6 -r 3 --bootstrap $BOOT
$B --bootstrap $BOOT --topic moving --records $RECORDS --record-size 1024 --acks all --linger-ms 5 --no-consume 2>/dev/null | grep -E "^produce"
V=1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293
RUST_LOG=warn $S --set node.id=4 --set process.roles=broker --set controller.quorum.voters=$V \
  --set log.dirs=$W/node-4 --set listeners=PLAINTEXT://127.0.0.1:9392,CONTROLLER://127.0.0.1:9393 \
  --set admin.http.listener=127.0.0.1:9944 > $W/node-4.log 2>&1 &
N4=$!
sleep 4
fetched() { curl -s 127.0.0.1:9944/metrics | awk '/^strom_replication_throttled_bytes_total\{role="follower"\}/ {print $2}'; }
echo "-- rebalance onto broker 4, throttled at $RATE B/s"
before=$(fetched)
/usr/bin/time -f "%e s" $S cluster rebalance --execute --throttle $RATE --bootstrap $BOOT | tail -2
echo "throttled bytes fetched by broker 4: $(( $(fetched) - before ))"
du -sh $W/node-4
echo "-- decommission broker 4 (moves back, unthrottled)"
/usr/bin/time -f "%e s" $S cluster decommission 4 --execute --bootstrap $BOOT | tail -2
sleep 2
echo "-- rebalance onto broker 4, no throttle"
/usr/bin/time -f "%e s" $S cluster rebalance --execute --bootstrap $BOOT | tail -2
du -sh $W/node-4
kill -TERM $N4; wait $N4
pkill -TERM -f "strom dev --nodes 3"
sleep 2
