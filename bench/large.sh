#!/usr/bin/env bash
# Large-room scenarios of chatserver, each beside bare-broadcast in the same run (a fresh
# server per scenario). Usage: bench/large.sh   (env knobs below; SCEN picks scenarios)
# Prints markdown tables; raw JSON lines, server logs and the sweep plot go to $OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCEN=${SCEN:-"joinstorm idle rooms feeds soak sweep"}
SRC_IPS=${SRC_IPS:-8}                   # 127.0.0.1..8 as source addresses: 8 × 28k ephemeral ports
# joinstorm: clients per run (one room), settle window, no-read size (0: skip)
JOIN_CLIENTS=${JOIN_CLIENTS:-"3000 15000"}
JOIN_SETTLE=${JOIN_SETTLE:-10}
JOIN_NOREAD=${JOIN_NOREAD:-3000}
JOIN_TIMEOUT=${JOIN_TIMEOUT:-300}
# idle: connections, each joined to one of IDLE_ROOMS presence rooms, held IDLE_HOLD s
IDLE_CLIENTS=${IDLE_CLIENTS:-15000}
IDLE_ROOMS=${IDLE_ROOMS:-150}
IDLE_HOLD=${IDLE_HOLD:-10}
# rooms: ROOMS rooms × ROOM_RATE msg/s each, ROOM_SUBS subscribers per room
ROOMS=${ROOMS:-100}
ROOM_RATE=${ROOM_RATE:-50}
ROOM_SUBS=${ROOM_SUBS:-3}
ROOM_DUR=${ROOM_DUR:-20}
# feeds: FEED_SYMBOLS × FEED_RATE quotes/s, FEED_SUBS subscribers × FEED_PER_SUB symbols
FEED_SYMBOLS=${FEED_SYMBOLS:-200}
FEED_RATE=${FEED_RATE:-10}
FEED_SUBS=${FEED_SUBS:-5000}
FEED_PER_SUB=${FEED_PER_SUB:-20}
FEED_SLOW=${FEED_SLOW:-0}
FEED_DUR=${FEED_DUR:-20}
# soak: SOAK_INFLIGHT clients churning for SOAK_DUR s at most SOAK_RATE cycles/s
SOAK_DUR=${SOAK_DUR:-60}
SOAK_INFLIGHT=${SOAK_INFLIGHT:-200}
SOAK_RATE=${SOAK_RATE:-200}
SOAK_QUIET=${SOAK_QUIET:-10}
# sweep: stored-room fan-out, subscribers × total msg/s, SWEEP_DUR s each
SWEEP_SUBS=${SWEEP_SUBS:-"1000 2000 5000"}
SWEEP_RATES=${SWEEP_RATES:-"100 500 1000"}
SWEEP_DUR=${SWEEP_DUR:-10}
PLOT=${PLOT:-$ROOT/docs/bench-sweep.png}  # PLOT= (empty) skips the plot
PYTHON=${PYTHON:-$ROOT/target/plotvenv/bin/python}
SERVER_VMEM_KB=${SERVER_VMEM_KB:-16777216}  # 16 GiB of address space for the chat server (24 GiB box)
. "$ROOT/bench/common.sh"

has() { case " $SCEN " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if has joinstorm; then
  for N in $JOIN_CLIENTS; do
    start_chat "chat-joinstorm-$N"
    run "chat-joinstorm-$N" joinstorm --secret "$SECRET" --clients "$N" --settle "$JOIN_SETTLE" --timeout "$JOIN_TIMEOUT"
    stop_server
    start_bare "bare-joinstorm-$N"; run "bare-joinstorm-$N" joinstorm --target bare --clients "$N" --settle "$JOIN_SETTLE"; stop_server
  done
  if [ "$JOIN_NOREAD" -gt 0 ]; then
    start_chat "chat-joinstorm-noread-$JOIN_NOREAD"
    run "chat-joinstorm-noread-$JOIN_NOREAD" joinstorm --secret "$SECRET" --clients "$JOIN_NOREAD" --settle "$JOIN_SETTLE" --no-read --timeout "$JOIN_TIMEOUT"
    stop_server
  fi
fi
if has idle; then
  start_chat "chat-idle-rooms"; run "chat-idle-rooms" idle --secret "$SECRET" --clients "$IDLE_CLIENTS" --rooms "$IDLE_ROOMS" --hold "$IDLE_HOLD"; stop_server
  start_bare "bare-idle";       run "bare-idle" idle --target bare --clients "$IDLE_CLIENTS" --hold "$IDLE_HOLD"; stop_server
fi
if has rooms; then
  start_chat "chat-rooms"; run "chat-rooms" rooms --secret "$SECRET" --rooms "$ROOMS" --rate "$ROOM_RATE" --subs "$ROOM_SUBS" --duration "$ROOM_DUR"; stop_server
  # bare has no rooms: the same total rate to the same number of subscribers per message
  start_bare "bare-rooms"; run "bare-rooms" bare --scenario rooms --subs "$ROOM_SUBS" --pubs 1 --rate $((ROOMS * ROOM_RATE)) --duration "$ROOM_DUR"; stop_server
fi
if has feeds; then
  start_chat "chat-feeds"
  run "chat-feeds" feeds --secret "$SECRET" --symbols "$FEED_SYMBOLS" --rate "$FEED_RATE" --subs "$FEED_SUBS" --per-sub "$FEED_PER_SUB" --slow "$FEED_SLOW" --duration "$FEED_DUR"
  stop_server
  # bare: the same fan-out per quote (subscribers per symbol) at the same total quote rate,
  # hence the same deliveries/s
  start_bare "bare-feeds"
  run "bare-feeds" bare --scenario feeds --subs $((FEED_SUBS * FEED_PER_SUB / FEED_SYMBOLS)) --pubs 4 --rate $((FEED_SYMBOLS * FEED_RATE)) --duration "$FEED_DUR"
  stop_server
fi
if has soak; then
  start_chat "chat-soak"; run "chat-soak" soak --secret "$SECRET" --inflight "$SOAK_INFLIGHT" --rate "$SOAK_RATE" --duration "$SOAK_DUR" --quiet "$SOAK_QUIET"; stop_server
  start_bare "bare-soak"; run "bare-soak" soak --target bare --inflight "$SOAK_INFLIGHT" --rate "$SOAK_RATE" --duration "$SOAK_DUR" --quiet "$SOAK_QUIET"; stop_server
fi
if has sweep; then
  for S in $SWEEP_SUBS; do
    for R in $SWEEP_RATES; do
      start_chat "sweep-chat-$S-$R"; run "sweep-chat-$S-$R" fanout --secret "$SECRET" --subs "$S" --pubs 4 --rate "$R" --duration "$SWEEP_DUR" --channel room:sweep; stop_server
      start_bare "sweep-bare-$S-$R"; run "sweep-bare-$S-$R" bare --subs "$S" --pubs 4 --rate "$R" --duration "$SWEEP_DUR"; stop_server
    done
  done
  if [ -n "$PLOT" ]; then
    if [ -x "$PYTHON" ]; then
      "$PYTHON" "$ROOT/bench/plot_sweep.py" "$RESULTS" "$PLOT" >&2 || echo "!! plot failed" | tee -a "$OUT/notes.txt" >&2
    else
      echo "!! no $PYTHON with matplotlib: see bench/README.md (plot) to draw $PLOT from $RESULTS" | tee -a "$OUT/notes.txt" >&2
    fi
  fi
fi

report "Large rooms"
