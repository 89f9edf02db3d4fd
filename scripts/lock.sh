#!/usr/bin/env bash
# Remake constraints.txt, the exact package versions scripts/setup.sh installs: resolve pyproject's ranges afresh in a
# scratch venv and freeze what pip chose. Run it on CPython 3.11 (what CI runs), then run the suite on the new set
# (scripts/setup.sh && .venv/bin/python -m pytest) before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "lock.sh: $python is not CPython 3.11; set PYTHON=python3.11" >&2
  exit 1
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$python" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --upgrade pip
"$scratch/venv/bin/python" -m pip install --quiet --editable ".[test]"
{
  echo "# The versions scripts/setup.sh installs on CPython 3.11, frozen by scripts/lock.sh on $(date -u +%Y-%m-%d)."
  echo "# pyproject.toml says what the project needs; this says what CI last passed with. Do not edit by hand."
  "$scratch/venv/bin/python" -m pip freeze --exclude-editable
} > constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) packages pinned"
