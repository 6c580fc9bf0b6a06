#!/usr/bin/env bash
# The main job on an embedded default (no network): sets up .venv from nothing if needed, then runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/demo.py "$@"
