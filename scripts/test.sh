#!/usr/bin/env bash
# Install everything the tests need, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check featurestore tests benchmarks feature_repo
.venv/bin/mypy
.venv/bin/python -m pytest -n 2 "$@"
