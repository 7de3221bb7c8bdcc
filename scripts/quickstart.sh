#!/usr/bin/env bash
# Install, generate the example data, apply feature_repo/, materialize it (offline snapshots and the
# embedded online server, started and stopped by each command), print a training set and online values.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python feature_repo/generate_data.py
.venv/bin/featurestore --repo feature_repo plan
.venv/bin/featurestore --repo feature_repo apply
.venv/bin/featurestore --repo feature_repo materialize --offline 2026-01-01 2026-04-01
.venv/bin/featurestore --repo feature_repo materialize 2026-01-01 2026-04-01
.venv/bin/featurestore --repo feature_repo lineage user_credit_usage:spend_per_credit_point
.venv/bin/python feature_repo/quickstart.py
