#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need,
# then runs them. This is the README's test command; .ci/run calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs Debian packages when a check fails: as root (CI, a fresh
# machine) it installs them, otherwise it says which test will fail.
need() {
    local check="$1" why="$2"
    shift 2
    if ! eval "$check" >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq "$@" >/dev/null
        else
            echo "note: $* missing and not root: $why" >&2
        fi
    fi
}

# The console's browser tests drive headless Chromium through chromedriver.
need 'command -v chromium && command -v chromedriver' \
    "the browser tests skip (they fail in CI)" chromium chromium-driver
# Node.js and npm: axe-core in the browser tests (fetched once into the
# target dir), a real OpenID Connect provider for the console's OIDC login
# (npm oidc-provider, pinned in tests/oidc/package-lock.json), and the API
# Design Rules linter (npx).
need 'command -v npm && command -v npx' \
    "the browser, OIDC and lint steps fail" nodejs npm
if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
    (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)
fi
# The covenant test checks a signature made by another JWS implementation:
# Python with the `cryptography` package.
need 'python3 -c "import cryptography"' \
    "the covenant interoperability test fails" python3-cryptography
# tests/postgres.rs runs three gateways on a throw-away PostgreSQL cluster
# (initdb in a temp dir): Debian's server binaries, without the package's
# own cluster (create_main_cluster = false), which the tests do not use.
if [ "$(id -u)" = 0 ] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
fi
need 'ls /usr/lib/postgresql/*/bin/initdb' "tests/postgres.rs fails" postgresql
# The partner API serves docs/openapi.json, the console API
# docs/console-openapi.json, each generated from its YAML
# (scripts/openapi-json.py, PyYAML): the forms must not drift.
need 'python3 -c "import yaml"' "the OpenAPI check fails" python3-yaml
python3 scripts/openapi-json.py --check

# The NL API Design Rules linter (Logius' Spectral ruleset, copied into
# linter/spectral.yml with the commit it came from): 0 errors on both
# documents; npx fetches the pinned CLI on first use.
for doc in docs/openapi.yaml docs/console-openapi.yaml; do
    npx --yes @stoplight/spectral-cli@6.16.3 lint --fail-severity error \
        --ruleset linter/spectral.yml "$doc"
done

# Smoke runs of the benchmarks (a few hundred records), so they cannot rot.
cargo test --locked --benches
# The suite proper: unit, integration, CLI and browser tests.
cargo test --locked --lib --bins --tests
