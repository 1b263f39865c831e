#!/usr/bin/env bash
# ketenpoort benchmark: the same load against
#   A  the back-end directly (nginx, mutual TLS)            the limit
#   B  nginx as an mTLS reverse proxy to that back-end      the baseline
#   D  (full run) C's stack with none of its work: bench/bare_proxy.rs, mutual
#      TLS in, hyper, the same pooled mutual-TLS back-end client, no policy,
#      no minimising, no audit; it tells the stack's cost from ketenpoort's
#   C  ketenpoort with Utrecht's casusoverleg rule for DT&V's departure
#      dossier: purpose check, minimisation, a durable audit record each
#      (embedded store; then on PostgreSQL with one node and with two nodes
#      sharing the load, bench/pg.sh, skipped in --smoke without initdb)
# interleaved A B (D) C A B (D) C ... so drift on a shared machine hits all alike;
# the median of the rounds is reported. Then the audit store's own figures
# (cargo bench --bench audit). Results go to bench/results/<date>.md.
#
#   bench/run.sh            full run (several minutes; AUDIT_LOG=N sets the
#                           size of the look-up log, default 10,000,000)
#   bench/run.sh --smoke    a few seconds per target, for CI: the script runs
#   bench/run.sh --long [N] only C, N exchanges (default 1,000,000; or
#                           LONG_RUN=N), sampling ketenpoort's resident memory
#                           every N/10 (LONG_STEP sets it); figures go to
#                           bench/results/<date>-long.tsv, and the growth from
#                           the middle to the end is printed (the leak check)
#
# CARGO_TARGET_DIR is honoured (the binary is taken from there).
#
# Installs what it needs when missing: oha (cargo install --locked oha) and
# nginx (Debian). Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SMOKE=0
LONG=${LONG_RUN:-0}
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --long)
            LONG=1000000
            if [[ "${2:-}" =~ ^[0-9]+$ ]]; then LONG=$2; shift; fi ;;
        *) echo "usage: bench/run.sh [--smoke | --long [N]]" >&2; exit 2 ;;
    esac
    shift
done
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v oha >/dev/null 2>&1; then
    echo "installing oha (cargo install --locked oha) ..."
    cargo install --locked oha >/dev/null
fi
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx (Debian) ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq nginx >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --locked -q
KP="${CARGO_TARGET_DIR:-$ROOT/target}/release/ketenpoort"
# D, in the full run: the same stack as C with none of its work
# (bench/bare_proxy.rs), to tell the stack's cost from ketenpoort's.
BARE=""
if [ "$SMOKE" = 0 ] && [ "$LONG" = 0 ]; then
    cargo build --release --locked -q --example bare-proxy
    BARE="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bare-proxy"
fi

WORK=$(mktemp -d /tmp/ketenpoort-bench.XXXXXX)
KPID=""
BAREPID=""
cleanup() {
    [ -n "$KPID" ] && kill "$KPID" 2>/dev/null || true
    [ -n "$BAREPID" ] && kill "$BAREPID" 2>/dev/null || true
    declare -F pg_stop >/dev/null && pg_stop
    for n in backend proxy; do
        [ -f "$WORK/nginx-$n.pid" ] && kill "$(cat "$WORK/nginx-$n.pid")" 2>/dev/null || true
    done
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
BACKEND=$(port); PROXY=$(port); GATEWAY=$(port); CONSOLE=$(port)

# A copy of the shipped config with its own PKI and data, DT&V's back-end
# pointed at the nginx back-end.
cp -r config "$WORK/config"
"$KP" pki init --config "$WORK/config/ketenpoort.toml" >/dev/null
CERTS="$WORK/certs/dev"
# The data folder as pki init left it (keys, covenant signatures in the
# inbox), before the embedded gateway takes it: the PostgreSQL nodes start
# from it.
cp -a "$WORK/data" "$WORK/data-pg-seed"
python3 "$ROOT/bench/support.py" point-backend "$WORK/config/partners.toml" dtv "$BACKEND"
mkdir -p "$WORK/www"
python3 "$ROOT/bench/support.py" dossier "$WORK/www/dossier.json"
# nginx's workers run as another user: they must be able to read the dossier.
chmod 755 "$WORK" "$WORK/www"
chmod 644 "$WORK/www/dossier.json"

for n in backend proxy; do
    python3 "$ROOT/bench/support.py" nginx-conf "$n" "$WORK" "$CERTS" "$BACKEND" "$PROXY" > "$WORK/nginx-$n.conf"
    "$NGINX" -c "$WORK/nginx-$n.conf" -e "$WORK/nginx-$n.err"
done

RUST_LOG=warn "$KP" serve --config "$WORK/config/ketenpoort.toml" \
    --partners-addr "127.0.0.1:$GATEWAY" --console-addr "127.0.0.1:$CONSOLE" 2>"$WORK/ketenpoort.log" &
KPID=$!
TLS=(--cert "$CERTS/gemeente-utrecht.crt" --key "$CERTS/gemeente-utrecht.key" --cacert "$CERTS/ca.crt")
for _ in $(seq 100); do
    curl -s -o /dev/null "${TLS[@]}" "https://127.0.0.1:$GATEWAY/v1/whoami" && break
    sleep 0.1
done

URL_A="https://127.0.0.1:$BACKEND/vertrekdossiers/5550001234"
URL_B="https://127.0.0.1:$PROXY/vertrekdossiers/5550001234"
URL_C="https://127.0.0.1:$GATEWAY/v1/pilots/utrecht/services/dtv/vertrekdossier/5550001234"
if [ -n "$BARE" ]; then
    BARE_PORT=$(port)
    "$BARE" "127.0.0.1:$BARE_PORT" "localhost:$BACKEND" "$CERTS" 2>"$WORK/bare.log" &
    BAREPID=$!
    URL_D="https://127.0.0.1:$BARE_PORT/vertrekdossiers/5550001234"
    for _ in $(seq 100); do curl -s -o /dev/null "${TLS[@]}" "$URL_D" && break; sleep 0.1; done
fi

# A check that C does its job: minimised and recorded.
CODE=$(curl -s -w '%{http_code}' -D "$WORK/c.headers" -o "$WORK/c.body" "${TLS[@]}" -H 'Ketenpoort-Purpose: casusoverleg' "$URL_C")
if [ "$CODE" != 200 ] || ! grep -qi '^ketenpoort-disclosure:' "$WORK/c.headers"; then
    echo "C does not disclose ($CODE): $(cat "$WORK/c.body")"; tail -5 "$WORK/ketenpoort.log"; exit 1
fi
if grep -q bijzonderheden "$WORK/c.body"; then echo "C leaked a withheld field"; exit 1; fi
echo "C answers $(wc -c < "$WORK/c.body") of $(wc -c < "$WORK/www/dossier.json") bytes; withheld: $(grep -i '^ketenpoort-withheld' "$WORK/c.headers" | cut -d' ' -f2 | tr -d '\r')"

if [ "$LONG" -gt 0 ]; then
    # The leak check: only C, a fixed number of exchanges per step, and the
    # gateway's resident memory (VmRSS; VmHWM is the peak) after each step.
    STEP=${LONG_STEP:-$((LONG / 10))}
    [ "$STEP" -gt 0 ] || STEP=$LONG
    OUT="bench/results/$(date -u +%Y-%m-%d)-long.tsv"
    n=2
    while [ -e "$OUT" ]; do OUT="bench/results/$(date -u +%Y-%m-%d)-long-run$n.tsv"; n=$((n + 1)); done
    mkdir -p bench/results
    rss_of() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$KPID/status"; }
    {
        echo "# ketenpoort resident memory under load on C (casusoverleg), $(date -u +%FT%TZ)"
        echo "# $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+changes'), $LONG exchanges, ${BENCH_CONNECTIONS:-32} connections, sampled every $STEP"
        printf 'exchanges\tnon_200\trss_kib\thwm_kib\tseconds\n'
        printf '0\t0\t%s\t%s\t0\n' "$(rss_of VmRSS)" "$(rss_of VmHWM)"
    } > "$OUT"
    done_n=0; bad=0; started=$(date +%s)
    while [ "$done_n" -lt "$LONG" ]; do
        n=$((LONG - done_n < STEP ? LONG - done_n : STEP))
        oha --no-tui --output-format json -n "$n" -c "${BENCH_CONNECTIONS:-32}" "${TLS[@]}" \
            -H 'Ketenpoort-Purpose: casusoverleg' "$URL_C" > "$WORK/long.json"
        bad=$((bad + $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(c for k, c in d.get("statusCodeDistribution", {}).items() if k != "200") + sum(d.get("errorDistribution", {}).values()))' "$WORK/long.json")))
        done_n=$((done_n + n))
        if ! kill -0 "$KPID" 2>/dev/null; then echo "ketenpoort stopped"; tail -5 "$WORK/ketenpoort.log"; exit 1; fi
        printf '%s\t%s\t%s\t%s\t%s\n' "$done_n" "$bad" "$(rss_of VmRSS)" "$(rss_of VmHWM)" "$(( $(date +%s) - started ))" | tee -a "$OUT"
    done
    python3 "$ROOT/bench/support.py" growth "$OUT"
    echo "written to $OUT"
    exit 0
fi

if [ "$SMOKE" = 1 ]; then DURATION=2s; ROUNDS=1; CONC=16; else DURATION=15s; ROUNDS=3; CONC=32; fi
DURATION=${BENCH_DURATION:-$DURATION}; CONC=${BENCH_CONNECTIONS:-$CONC}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$KPID/stat"; }
# B's CPU: the proxy nginx's master and workers (the back-end nginx serves A,
# B and C alike, so it counts for neither).
proxy_ticks() {
    local master s=0 p
    master=$(cat "$WORK/nginx-proxy.pid")
    for p in "$master" $(pgrep -P "$master"); do
        s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$s"
}
run() { # name url [extra oha args...]: writes $WORK/name.json
    local name=$1 url=$2; shift 2
    local extra=()
    case "$name" in C*|halfC*) extra=(-H 'Ketenpoort-Purpose: casusoverleg') ;; esac
    oha --no-tui --output-format json -z "$DURATION" -c "$CONC" "${TLS[@]}" "${extra[@]}" "$@" "$url" > "$WORK/$name.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], "status", d["statusCodeDistribution"], "errors", d["errorDistribution"], file=sys.stderr)' "$WORK/$name.json" "$name"
}

CPU_TICKS=0
B_TICKS=0
D_TICKS=0
for r in $(seq "$ROUNDS"); do
    run "A$r" "$URL_A"
    b0=$(proxy_ticks)
    run "B$r" "$URL_B"
    b1=$(proxy_ticks)
    B_TICKS=$((B_TICKS + b1 - b0))
    if [ -n "$BAREPID" ]; then
        d0=$(awk '{print $14 + $15}' "/proc/$BAREPID/stat")
        run "D$r" "$URL_D"
        D_TICKS=$((D_TICKS + $(awk '{print $14 + $15}' "/proc/$BAREPID/stat") - d0))
    fi
    t0=$(cpu_ticks)
    if [ "${PROFILE:-0}" = 1 ] && [ "$r" = 1 ]; then
        # A CPU profile of ketenpoort under load: perf report -i target/perf.data
        perf record -F 499 ${PERF_CALLGRAPH:--g} -p "$KPID" -o "$ROOT/target/perf.data" -- sleep "${DURATION%s}" >/dev/null 2>&1 &
    fi
    if [ -n "${PROBE:-}" ] && [ "$r" = 1 ]; then
        # Any other probe of ketenpoort under load, e.g.
        # PROBE='timeout 5 strace -c -f -p $KPID -o target/strace.txt'
        KPID=$KPID bash -c "$PROBE" >/dev/null 2>&1 &
    fi
    run "C$r" "$URL_C"
    t1=$(cpu_ticks)
    CPU_TICKS=$((CPU_TICKS + t1 - t0))
done
# Latency C adds over A at half of C's peak rate, in as many interleaved
# rounds as the peak: one round's p99 here can be off by a millisecond.
HALF=$(python3 "$ROOT/bench/support.py" half "$WORK" "$ROUNDS")
for r in $(seq "$ROUNDS"); do
    run "halfA$r" "$URL_A" -q "$HALF"
    run "halfC$r" "$URL_C" -q "$HALF"
done
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$KPID/status")
# Allocations per exchange, counted where timings here vary by a fifth:
# uprobes on mimalloc's entry points count every allocation of C's threads
# over 3,000 exchanges at 500 req/s (below saturation, so the count does
# not depend on batching under load). Needs perf with uprobes (root);
# skipped otherwise and in --smoke.
if [ "$SMOKE" = 0 ] && command -v perf >/dev/null 2>&1 &&
    perf probe -q -x "$KP" --add 'kpallocs:kpmalloc=mi_malloc_aligned' >/dev/null 2>&1; then
    perf probe -q -x "$KP" --add 'kpallocs:kprealloc=mi_realloc_aligned' >/dev/null 2>&1 || true
    perf stat --per-thread -e 'kpallocs:*' -p "$KPID" -o "$WORK/allocs.txt" -- \
        oha --no-tui -n 3000 -q 500 -c "$CONC" "${TLS[@]}" -H 'Ketenpoort-Purpose: casusoverleg' "$URL_C" >/dev/null 2>&1 || true
    perf probe -q -d 'kpallocs:*' >/dev/null 2>&1 || true
fi
# C on PostgreSQL, one node and two (bench/pg.sh); the embedded gateway
# stays idle meanwhile.
source "$ROOT/bench/pg.sh"

# The audit store's own figures.
if [ "$SMOKE" = 1 ]; then
    cargo bench --locked --bench audit -- --smoke 2>/dev/null | grep -v '^#' > "$WORK/audit.txt"
else
    cargo bench --locked --bench audit -- --bench --log "${AUDIT_LOG:-10000000}" 2>/dev/null | grep -v '^#' > "$WORK/audit.txt"
fi

# A second run on the same day goes beside the first, not over it.
OUT="bench/results/$(date -u +%Y-%m-%d).md"
n=2
while [ -e "$OUT" ]; do OUT="bench/results/$(date -u +%Y-%m-%d)-run$n.md"; n=$((n + 1)); done
[ "$SMOKE" = 1 ] && OUT="$WORK/smoke.md"
python3 "$ROOT/bench/support.py" report "$OUT" "$WORK" "$ROUNDS" "$SMOKE" "$DURATION" "$CONC" "$HALF" "$RSS_KB" "$CPU_TICKS" "$(getconf CLK_TCK)" "$B_TICKS" "$D_TICKS"
[ "$SMOKE" = 1 ] || echo "written to $OUT"
