#!/usr/bin/env bash
# Unit tests of the JS client and browser (e2e) tests of the pages.
#   bash tests/browser/run.sh            # unit + e2e
#   bash tests/browser/run.sh unit       # unit only
#   bash tests/browser/run.sh e2e        # e2e only
# Env: CHAT_SERVER_BIN (default target/debug/chatserver; must be built before),
#      CHROMIUM_BIN (default /usr/bin/chromium), E2E_REQUIRED=1 to fail when the
#      server binary is missing instead of skipping the e2e tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
what="${1:-all}"

if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/ws ]; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi

chromium="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [ "$what" != unit ] && [ ! -x "$chromium" ]; then
  echo "chromium not found at $chromium: installing Debian's package" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

server="${CHAT_SERVER_BIN:-target/debug/chatserver}"
if [ "$what" != unit ] && [ ! -e "$server" ]; then
  if [ "${E2E_REQUIRED:-0}" = 1 ]; then
    echo "server binary $server missing (build it with cargo build first)" >&2
    exit 1
  fi
  echo "warning: server binary $server missing: the e2e tests will be skipped" >&2
fi

status=0
if [ "$what" != e2e ]; then
  node --test tests/browser/unit/ || status=1
fi
if [ "$what" != unit ]; then
  # one test file at a time: each starts its own server and browser (2 cores)
  node --test --test-concurrency=1 tests/browser/e2e/ || status=1
fi
exit $status
