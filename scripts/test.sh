#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need,
# then runs them. This is the README's test command; .ci/run calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."
# Smoke runs of the benchmarks (a few hundred records), so they cannot rot.
cargo test --locked --benches
# The suite proper: unit, integration and CLI tests.
cargo test --locked --lib --bins --tests
