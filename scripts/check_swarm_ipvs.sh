#!/usr/bin/env bash
# Inside the stock-kernel VM: a real 2-node swarm with Docker's own VIP and routing mesh,
# traced with the bcc backend while requests run. Prints the traced requests.
set -u
cd "$(dirname "$0")/.."
swarmtrace lab up --swarm --nodes 2 || exit 1
trap 'swarmtrace lab down >/dev/null' EXIT
swarmtrace trace --backend bcc --oneline --port 8080 --port 80 --port 53 --timeout 400 \
  --count 12 > /tmp/swarm_trace.txt 2>/tmp/swarm_trace.err &
tracer=$!
until grep -q "tracing with" /tmp/swarm_trace.err 2>/dev/null; do
  kill -0 $tracer 2>/dev/null || { cat /tmp/swarm_trace.err; exit 1; }
  sleep 1
done
swarmtrace lab traffic --mode mesh --count 4
swarmtrace lab traffic --mode vip --count 4
wait $tracer
cat /tmp/swarm_trace.err /tmp/swarm_trace.txt
