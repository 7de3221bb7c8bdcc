#!/usr/bin/env bash
# Install everything the tests need, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# Debian's redis-tools: a TLS-capable Redis binary for the TLS test (the bundled Valkey has no TLS)
# and redis-benchmark for the benchmarks. Installing it starts no server.
if ! command -v redis-check-rdb >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null) || echo "could not install redis-tools" >&2
fi
# The Node.js client of the gRPC API (tests/test_node_client.py): its npm packages, from the lock file.
if command -v node >/dev/null && command -v npm >/dev/null; then npm ci --prefix tests/node_client --no-audit --no-fund; else echo "warning: node/npm not found: not installing tests/node_client (tests/test_node_client.py skips, or fails when CI is set)" >&2; fi
.venv/bin/ruff check featurestore tests benchmarks feature_repo dags
.venv/bin/mypy
.venv/bin/python -m pytest -n 2 "$@"
