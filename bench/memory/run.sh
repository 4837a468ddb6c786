#!/usr/bin/env bash
# Server RSS per idle WebSocket connection: N connections, each joined to a presence room
# (room:idle-<i mod R>, ROOM_SIZE connections a room), held HOLD s; then the same N
# connections on bare-broadcast, in the same run. A fresh server per measurement; the load
# generator is a separate process. Prints a markdown table.
#   bench/memory/run.sh                         # N = 1000 10000 15000
#   NS="1000" HOLD=10 bench/memory/run.sh       # smaller
#   CHAT_BIN=/path/to/chatserver bench/memory/run.sh   # measure another build
# RSS per connection = (server RSS after the hold - RSS before the first connection) / N,
# from /proc/<pid>/status (VmRSS), as the load generator reports it (rss_kb_per_conn_settled).
set -euo pipefail

NS=${NS:-"1000 10000 15000"}
HOLD=${HOLD:-15}
ROOM_SIZE=${ROOM_SIZE:-100}
SRC_IPS=${SRC_IPS:-8}
. "$(cd "$(dirname "$0")/.." && pwd)/common.sh"
# One process may open 20,000 files here: server and load generator are two processes,
# each with its own limit.
ulimit -n "$(( $(ulimit -Hn) < 20000 ? $(ulimit -Hn) : 20000 ))"
SERVER=${CHAT_BIN:-$SERVER}

for N in $NS; do
  R=$(( (N + ROOM_SIZE - 1) / ROOM_SIZE ))
  start_chat "chat-idle-$N"
  run "chat-idle-$N" idle --secret "$SECRET" --clients "$N" --rooms "$R" --hold "$HOLD"
  stop_server
  start_bare "bare-idle-$N"
  run "bare-idle-$N" idle --target bare --clients "$N" --hold "$HOLD"
  stop_server
done

echo
echo "## RSS per idle connection ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load generator on the same machine)"
echo
echo "chatserver: $SERVER ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')); raw results: $RESULTS"
echo
python3 - "$RESULTS" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    v = json.loads(line)
    label = v.get("label", "")
    kind, _, n = label.partition("-idle-")
    rows.setdefault(int(n), {})[kind] = v
print("| connections | chatserver KB/conn | bare-broadcast KB/conn | chatserver alive at end | chatserver RSS before → after hold (KB) |")
print("|---:|---:|---:|---:|---|")
for n in sorted(rows):
    c, b = rows[n].get("chat", {}), rows[n].get("bare", {})
    print(f"| {n:,} | {c.get('rss_kb_per_conn_settled', '?')} | {b.get('rss_kb_per_conn_settled', '?')} | "
          f"{c.get('alive_end', '?')} | {c.get('server_rss_kb_before', '?')} → {c.get('server_rss_kb_settled', '?')} |")
PY
if [ -s "$OUT/notes.txt" ]; then echo; echo "Notes:"; sed 's/^/- /' "$OUT/notes.txt"; fi
