#!/usr/bin/env bash
# Set up a fresh machine: .venv with the pinned Python packages, and Debian's Chromium for the browser tests.
# Safe to run again: it installs only what is missing or not at the tested version.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints.txt holds the exact versions CI passed with, frozen on CPython 3.11 (scripts/lock.sh remakes it; they
# resolve on 3.12 too): a new release of a loosely pinned package cannot change the figures or the suite's time
# unnoticed. Some of them (Pillow 13, pandas 3) need Python 3.11, so 3.10 gets pyproject's ranges instead.
if .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  .venv/bin/python -m pip install --quiet --constraint constraints.txt --editable ".[test]"
else
  echo "setup: .venv has Python 3.10, so pip resolves pyproject.toml's ranges, not the tested constraints.txt" >&2
  .venv/bin/python -m pip install --quiet --editable ".[test]"
fi

# Playwright cannot download its own browsers here; the tests drive Debian's chromium instead.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get install -y -q chromium || { $sudo apt-get update -q && $sudo apt-get install -y -q chromium; }
fi
# axe-core (MPL-2.0) for the accessibility test, from the npm registry into node_modules/ (git-ignored); only its
# axe.min.js is used, injected into the page under test.
AXE_VERSION=4.14.1
if [ ! -f node_modules/axe-core/axe.min.js ] \
    || ! grep -q "\"version\": \"$AXE_VERSION\"" node_modules/axe-core/package.json; then
  npm install --no-save --no-package-lock --no-audit --no-fund --silent "axe-core@$AXE_VERSION"
fi
echo "setup done: .venv ready, chromium at /usr/bin/chromium, axe-core $AXE_VERSION in node_modules/"
