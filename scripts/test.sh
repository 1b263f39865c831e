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

# tests/postgres.rs runs three gateways on a throw-away PostgreSQL cluster
# (initdb in a temp dir): Debian's server binaries, without the package's
# own cluster (create_main_cluster = false), which the tests do not use.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        mkdir -p /etc/postgresql-common
        [ -e /etc/postgresql-common/createcluster.conf ] ||
            echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
        apt-get update -qq
        apt-get install -y -qq postgresql >/dev/null
    else
        echo "note: PostgreSQL binaries missing and not root: tests/postgres.rs fails" >&2
    fi
fi

# The partner API serves docs/openapi.json, generated from docs/openapi.yaml
# (scripts/openapi-json.py, PyYAML): the two must not drift.
if ! python3 -c 'import yaml' >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-yaml >/dev/null
fi
python3 scripts/openapi-json.py --check

# Smoke runs of the benchmarks (a few hundred records), so they cannot rot.
cargo test --locked --benches
# The suite proper: unit, integration, CLI and browser tests.
cargo test --locked --lib --bins --tests
