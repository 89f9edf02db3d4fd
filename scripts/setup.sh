#!/usr/bin/env bash
# Set up a fresh machine: .venv with the pinned Python packages, and Debian's Chromium for the browser tests.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --editable ".[test]"

# Playwright cannot download its own browsers here; the tests drive Debian's chromium instead.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get install -y -q chromium || { $sudo apt-get update -q && $sudo apt-get install -y -q chromium; }
fi
echo "setup done: .venv ready, chromium at /usr/bin/chromium"
