#!/usr/bin/env bash
# Set up kb on a fresh machine, build the index if there is none, and start the web UI.
#   bash scripts/serve.sh [--host 127.0.0.1] [--port 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/kb ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  # setuptools' notice about editable installs is for package authors, not for a user here.
  PYTHONWARNINGS=ignore .venv/bin/pip install --quiet -e .
fi
exec .venv/bin/kb serve "$@"   # builds the index first when index/ is empty
