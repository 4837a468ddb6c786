#!/usr/bin/env bash
# Benchmark of chatserver against the bare-broadcast yardstick, in the same run.
# Usage: bench/run.sh            (env: DUR=20 SUBS=1000 IDLE=15000 SIZE=100 PUBS=4 THREADS=2 OUT=dir)
# Prints a markdown table; raw JSON lines and server logs go to $OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=${DUR:-20}
SUBS=${SUBS:-1000}
IDLE=${IDLE:-15000}
SIZE=${SIZE:-100}
PUBS=${PUBS:-4}
RATES=${RATES:-"200 1000"}
. "$ROOT/bench/common.sh"

# --- scenarios ------------------------------------------------------------------------------
for R in $RATES; do
  start_chat "chat-room-$R";  run "chat-room-$R" fanout --secret "$SECRET" --subs "$SUBS" --pubs "$PUBS" --rate "$R" --duration "$DUR" --size "$SIZE" --channel room:bench; stop_server
  start_bare "bare-$R";       run "bare-$R" bare --subs "$SUBS" --pubs "$PUBS" --rate "$R" --duration "$DUR" --size "$SIZE"; stop_server
done
if [ "${TICKER:-1}" = 1 ]; then
  R=${RATES##* }
  start_chat "chat-ticker-$R"; run "chat-ticker-$R" fanout --secret "$SECRET" --subs "$SUBS" --pubs "$PUBS" --rate "$R" --duration "$DUR" --size "$SIZE" --channel ticker:BENCH; stop_server
fi
if [ "$IDLE" -gt 0 ]; then
  start_chat "chat-idle";  run "chat-idle" connections --secret "$SECRET" --conns "$IDLE" --hold 5; stop_server
  start_bare "bare-idle";  run "bare-idle" connections --target bare --conns "$IDLE" --hold 5; stop_server
fi

report "Results, ${DUR}s per fanout run"
