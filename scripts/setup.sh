#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install the project into it, with the extras given as arguments.
#   bash scripts/setup.sh            -> the package
#   bash scripts/setup.sh dev        -> the package and the test/lint tools
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "featurestore needs Python >= 3.11; set PYTHON=/path/to/python3.11 and retry" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
extras=""
if [ "$#" -gt 0 ]; then
    extras="[$(IFS=,; echo "$*")]"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
