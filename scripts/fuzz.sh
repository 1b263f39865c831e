#!/usr/bin/env bash
# Longer fuzzing runs of the four outside-facing parsers (tests/fuzz.rs) on
# the stable toolchain. Failing inputs are kept in fuzz/regressions/ and
# replayed by every later run, the suite included.
#   scripts/fuzz.sh            # 20,000 cases per target
#   FUZZ_CASES=200000 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p fuzz/regressions
# Overflow checks on, as in debug builds: an overflow is a finding.
CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true FUZZ_CASES="${FUZZ_CASES:-20000}" cargo test --release --locked --test fuzz -- --test-threads=2
