#!/usr/bin/env bash
# Install everything the tests need, then lint and run the whole suite (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[test]'
if ! command -v chromium >/dev/null 2>&1; then
  # Real-browser tests drive Debian's chromium (no browser download from the test tool).
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser tests will fail" >&2
fi
ruff check .
# Everything, heavy reliability tests included (developers may add -m "not heavy").
python -m pytest -q "$@"
