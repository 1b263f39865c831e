#!/usr/bin/env bash
# Builds the Debian package from the release binary already built (cargo-deb
# --no-build: the release build is not made twice), installs it with dpkg on
# this machine and checks it as an operator would: the binary answers, the
# installed `ketenpoort` user can check the installed configuration, the
# unit file verifies. Needs root (dpkg). .ci/run calls it after the
# benchmark smoke run, which builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" != 0 ]; then
    echo "check-package: needs root (dpkg -i)" >&2
    exit 1
fi
if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb (cargo install --locked cargo-deb) ..."
    cargo install --locked cargo-deb >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v adduser >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq adduser >/dev/null
fi

# The same command and profile as the benchmark's build: a no-op after it.
cargo build --release --locked -q
deb=$(cargo deb --no-build --locked 2>/dev/null | tail -n 1)
echo "package: $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"
dpkg -i "$deb"

fail() { echo "check-package: $*" >&2; exit 1; }
getent passwd ketenpoort >/dev/null || fail "no ketenpoort user"
[ "$(stat -c '%a %U' /var/lib/ketenpoort)" = "700 ketenpoort" ] ||
    fail "/var/lib/ketenpoort is $(stat -c '%a %U' /var/lib/ketenpoort), not 700 ketenpoort"
/usr/bin/ketenpoort --version
# From a folder without config/: the default is /etc/ketenpoort/ketenpoort.toml.
(cd / && runuser -u ketenpoort -- ketenpoort policy check)
runuser -u ketenpoort -- ketenpoort policy check --config /etc/ketenpoort/ketenpoort.toml
if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify /lib/systemd/system/ketenpoort.service
else
    echo "note: no systemd-analyze here; the unit file was not verified"
fi
# Installing again (as an upgrade does) keeps what the operator changed.
echo "# changed by the operator" >> /etc/ketenpoort/ketenpoort.toml
dpkg -i "$deb" >/dev/null
grep -q "changed by the operator" /etc/ketenpoort/ketenpoort.toml ||
    fail "reinstalling overwrote /etc/ketenpoort/ketenpoort.toml"
sed -i '/# changed by the operator/d' /etc/ketenpoort/ketenpoort.toml
echo "package installed and checked"
