#!/usr/bin/env bash
# Install everything the tests need, then lint and run the whole suite (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
# Exactly what the lock file names, each download checked against its hash; then the project
# itself without dependencies, built by the locked setuptools (no unpinned build environment).
python -m pip install -q --require-hashes -r requirements/test.txt
python -m pip install -q --no-deps --no-build-isolation -e .

# System packages from Debian: chromium for the real-browser tests (the test tool's own browser
# download cannot work here), serif fonts with every Vietnamese letter for the Decree 30 PDFs,
# poppler-utils to render PDF pages in tests, and gammu-smsd (with Gammu's dummy phone) for
# the SMS tests and bench.
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
has_package() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
has_package gammu-smsd || need+=(gammu-smsd)
# By package, not by font name: chromium pulls in fonts-liberation 1.x, also named "Liberation
# Serif", whose Vietnamese glyphs and metrics differ and move the PDFs' line breaks.
has_package fonts-liberation2 || need+=(fonts-liberation2)
has_package fonts-croscore || need+=(fonts-croscore)
# WeasyPrint warns (an error under filterwarnings=error) without HarfBuzz's subsetter.
ldconfig -p 2>/dev/null | grep -q "libharfbuzz-subset" || need+=(libharfbuzz-subset0)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
      || echo "could not install ${need[*]}: the tests that need them will say so" >&2
  else
    echo "missing system packages (install as root): ${need[*]}" >&2
  fi
fi

ruff check .
# Everything, heavy reliability tests included (developers may add -m "not heavy").
python -m pytest -q "$@"
