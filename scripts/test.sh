#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need,
# then runs them. This is the README's test command; .ci/run calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."

# The console's browser test drives headless Chromium through chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "note: chromium/chromedriver missing and not root: the browser test will skip (it fails in CI)" >&2
    fi
fi

# The browser test runs axe-core (npm `axe-core@4`, fetched once with npm into
# the target dir) on every view of the console page.
if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq npm >/dev/null
    else
        echo "note: npm missing and not root: the browser test will skip (it fails in CI)" >&2
    fi
fi

# The covenant test checks a signature made by another JWS implementation:
# Python with the `cryptography` package.
if ! python3 -c 'import cryptography' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq python3-cryptography >/dev/null
    else
        echo "note: python3-cryptography missing and not root: the covenant interoperability test fails" >&2
    fi
fi

# The partner API serves docs/openapi.json, the console API
# docs/console-openapi.json, each generated from its YAML
# (scripts/openapi-json.py, PyYAML): the forms must not drift.
if ! python3 -c 'import yaml' >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-yaml >/dev/null
fi
python3 scripts/openapi-json.py --check

# The NL API Design Rules linter (Logius' Spectral ruleset, copied into
# linter/spectral.yml with the commit it came from): 0 errors. Node 20 and
# npm are on the CI machine; npx fetches the pinned CLI on first use.
if ! command -v npx >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
fi
for doc in docs/openapi.yaml docs/console-openapi.yaml; do
    npx --yes @stoplight/spectral-cli@6.16.3 lint --fail-severity error \
        --ruleset linter/spectral.yml "$doc"
done

# Smoke runs of the benchmarks (a few hundred records), so they cannot rot.
cargo test --locked --benches
# The suite proper: unit, integration, CLI and browser tests.
cargo test --locked --lib --bins --tests
