#!/usr/bin/env bash
# Run the whole pytest suite against engines it starts itself (never the demo's).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
# headless browser for the end-to-end UI tests (Debian packages); skip quietly when apt is unavailable
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing chromium and chromium-driver for the UI tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "warning: could not install chromium; the browser tests will be skipped"
  fi
fi
# Redis broker for the Celery tests (tests/distributed); skipped with the reason when missing
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing redis-server for the Celery worker tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
      || echo "warning: could not install redis-server; the Celery worker tests will be skipped"
  fi
fi
exec .venv/bin/python -m pytest "$@"
