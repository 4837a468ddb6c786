#!/usr/bin/env bash
# Shared by bench/run.sh and bench/large.sh (sourced): builds, server start/stop, `run`.
# Needs: set -euo pipefail in the caller. Sets ROOT, OUT, RESULTS, LG, SERVER, BARE, SECRET.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # this file is in bench/
BARE_DIR=${BARE_DIR:-$(cd "$ROOT/../shared/bench/bare-broadcast" 2>/dev/null && pwd || echo /work/shared/bench/bare-broadcast)}
THREADS=${THREADS:-2}
SRC_IPS=${SRC_IPS:-1}
PORT=${PORT:-18100}
SECRET=${SECRET:-bench-secret-$$-$RANDOM-$RANDOM-$RANDOM-$RANDOM-$RANDOM}  # the server wants >= 32 bytes
OUT=${OUT:-$ROOT/target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

# Both the load generator and the servers need thousands of descriptors.
ulimit -n "$(ulimit -Hn)"
echo "# nofile limit $(ulimit -n); results in $OUT" >&2

# --- builds (release, once) -----------------------------------------------------------------
SERVER=$ROOT/target/release/chatserver
if [ ! -x "$SERVER" ] || [ -n "$(find "$ROOT/src" "$ROOT/migrations" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$SERVER" -print -quit 2>/dev/null)" ]; then
  echo "# building chatserver (release)" >&2
  (cd "$ROOT" && nice -n 10 cargo build --release --bin chatserver) >&2
fi
echo "# building loadgen" >&2
CARGO_TARGET_DIR=$ROOT/target/loadgen nice -n 10 cargo build --release --manifest-path "$ROOT/bench/loadgen/Cargo.toml" >&2
LG=$ROOT/target/loadgen/release/loadgen
echo "# building bare-broadcast" >&2
nice -n 10 cargo build --release --manifest-path "$BARE_DIR/Cargo.toml" --target-dir "$ROOT/target/bare" >&2
BARE=$ROOT/target/bare/release/bare-broadcast

# Each server runs in its own session, hence its own scheduler autogroup
# (kernel.sched_autogroup_enabled=1 here): otherwise the server's threads share one
# autogroup with the load generator and both get squeezed together when other sessions
# (e.g. a concurrent cargo build) load the machine. SETSID= (empty) disables this.
SETSID=${SETSID-setsid}

# --- servers --------------------------------------------------------------------------------
SPID=""
SNAME=""
DATA=""
start_chat() { # name
  SNAME=$1; PORT=$((PORT + 1)); DATA=$(mktemp -d /tmp/chatbench.XXXXXX)
  # SERVER_VMEM_KB: address-space limit of the server (a runaway server then fails its
  # allocation and dies, reported below, instead of pushing the machine into the OOM killer)
  (
    [ -n "${SERVER_VMEM_KB:-}" ] && ulimit -v "$SERVER_VMEM_KB"
    CHAT_DEMO=false CHAT_BIND=127.0.0.1:$PORT CHAT_DATA_DIR=$DATA CHAT_JWT_SECRET=$SECRET \
      CHAT_PUBLISH_RATE=${CHAT_PUBLISH_RATE:-100000} CHAT_PUBLISHER_RATE=${CHAT_PUBLISHER_RATE:-1000000} \
      CHAT_ROOMS_PER_HOUR=${CHAT_ROOMS_PER_HOUR:-100000} RUST_LOG=${RUST_LOG:-warn} \
      CHAT_HANDSHAKES_PER_MIN_PER_ADDRESS=${CHAT_HANDSHAKES_PER_MIN_PER_ADDRESS:-10000000} \
      CHAT_MAX_CONNS_PER_ADDRESS=${CHAT_MAX_CONNS_PER_ADDRESS:-0} CHAT_MAX_CONNS_PER_USER=${CHAT_MAX_CONNS_PER_USER:-0} \
      exec $SETSID "$SERVER" >"$OUT/$SNAME.stdout" 2>"$OUT/$SNAME.stderr"
  ) &
  SPID=$!
  for _ in $(seq 1 300); do
    grep -q "^listening on" "$OUT/$SNAME.stdout" 2>/dev/null && return 0
    kill -0 "$SPID" 2>/dev/null || { echo "chatserver exited at start:" >&2; cat "$OUT/$SNAME.stderr" >&2; exit 1; }
    sleep 0.1
  done
  echo "chatserver did not print 'listening on'" >&2; exit 1
}
start_bare() { # name
  SNAME=$1; PORT=$((PORT + 1)); DATA=""
  $SETSID "$BARE" 127.0.0.1:$PORT >"$OUT/$SNAME.stdout" 2>"$OUT/$SNAME.stderr" &
  SPID=$!
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bare-broadcast did not listen" >&2; exit 1
}
stop_server() {
  if ! kill -0 "$SPID" 2>/dev/null; then
    wait "$SPID" && rc=0 || rc=$?
    echo "!! $SNAME (pid $SPID) had died during the run, exit status $rc" | tee -a "$OUT/notes.txt" >&2
  else
    kill -TERM "$SPID"
    for _ in $(seq 1 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SPID" 2>/dev/null && { echo "!! $SNAME did not exit 10 s after SIGTERM; killing" | tee -a "$OUT/notes.txt" >&2; kill -KILL "$SPID"; }
    wait "$SPID" 2>/dev/null || true
  fi
  local n; n=$(grep -ciE "warn|error|panic" "$OUT/$SNAME.stderr" || true)
  [ "$n" != "0" ] && echo "!! $SNAME: $n warning/error lines in $OUT/$SNAME.stderr" | tee -a "$OUT/notes.txt" >&2
  [ -n "$DATA" ] && rm -rf "$DATA"
  SPID=""
}
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null; true' EXIT

run() { # name, loadgen args...
  local name=$1; shift
  echo "# --- $name: loadgen $*" >&2
  "$LG" "$@" --url 127.0.0.1:$PORT --server-pid "$SPID" --threads "$THREADS" --src-ips "$SRC_IPS" --label "$name" | tee -a "$RESULTS" >&2 ||
    echo "!! $name: loadgen exited with an error" | tee -a "$OUT/notes.txt" >&2
}

report() { # title
  echo
  echo "## $1 ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, loadgen on the same machine)"
  echo
  echo "chatserver binary built $(date -u -r "$SERVER" +%Y-%m-%dT%H:%MZ) from $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'); raw results: $RESULTS"
  echo
  "$LG" table "$RESULTS"
  if [ -s "$OUT/notes.txt" ]; then echo; echo "Notes:"; sed 's/^/- /' "$OUT/notes.txt"; fi
}

