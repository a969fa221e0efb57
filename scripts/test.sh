#!/usr/bin/env bash
# Install everything the test suite needs (Chromium, CPU torch, the project with its extras)
# and run it: ruff, then pytest.   bash scripts/test.sh [pytest arguments], e.g. -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  # Browser tests drive Debian's Chromium; never a test tool's own browser download.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
# The CPU build of torch lies on this machine's disk; any other torch pulls gigabytes.
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -e '.[st,test]'
# The README promises a ruff-clean tree: CI checks it before the tests.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q "$@"
