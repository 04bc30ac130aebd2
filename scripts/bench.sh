#!/usr/bin/env bash
# Benchmarks on PostgreSQL, Redis and DynamoDB Local. Prints the figures and writes
# bench-results.json. Targets are in docs and the closing notes, never in tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shardwatch_bench}"
export REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379/14}"
export DJANGO_SETTINGS_MODULE=bench.settings
exec .venv/bin/python -m bench.run "$@"
