# Sourced by bench/run.sh: C on PostgreSQL ([storage] backend = "postgres"),
# with one node and with two nodes sharing the load, beside the embedded C.
# A throw-away cluster (initdb in $WORK/pg, unix socket only, trust for its
# own user), as tests/common/pg.rs makes one; PostgreSQL refuses to run as
# root, so as root it belongs to nobody. Needs from run.sh: KP, WORK, ROOT,
# SMOKE, TLS, DURATION, CONC, port(), run().
# Writes $WORK/Cpg1.json, $WORK/Cpg2a.json and $WORK/Cpg2b.json, or
# $WORK/pg-skipped with the reason.

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    if [ "$SMOKE" = 1 ]; then
        echo "no PostgreSQL (no initdb under /usr/lib/postgresql/*/bin): C on PostgreSQL skipped in this smoke run (scripts/test.sh installs postgresql)"
        echo "no PostgreSQL on this machine" > "$WORK/pg-skipped"
        return 0
    fi
    if [ "$(id -u)" = 0 ]; then
        echo "installing postgresql (Debian) ..."
        export DEBIAN_FRONTEND=noninteractive
        # Debian's package would make and start a cluster of its own.
        if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
            mkdir -p /etc/postgresql-common
            echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
        fi
        apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    else
        echo "C on PostgreSQL needs Debian's postgresql (apt-get install postgresql)" >&2
        exit 1
    fi
fi

PGDIR="$WORK/pg"
PGPORT=$(port)
mkdir -p "$PGDIR"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown nobody:nogroup "$PGDIR"
as_pg "$PG_BIN/initdb" -D "$PGDIR/data" -U ketenpoort --auth=trust >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
    -o "-k $PGDIR -c listen_addresses= -p $PGPORT -c max_connections=100" start >/dev/null
as_pg "$PG_BIN/createdb" -h "$PGDIR" -p "$PGPORT" -U ketenpoort ketenpoort
pg_stop() {
    local f
    for f in "$WORK"/pg-node*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    sleep 0.3
    as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null 2>&1 || true
}

# Each node: the bench's config with its own data_dir (the embedded one's
# as pki init left it, for the covenant signatures; node 2 takes node 1's
# keys, as every node of a deployment does) and the database.
pg_node() { # i: starts node i; sets PG_PORT
    local i=$1 c
    PG_PORT=$(port); c=$(port)
    sed "s|^data_dir = \"../data\"|data_dir = \"../data-pg$i\"|" "$WORK/config/ketenpoort.toml" > "$WORK/config/pg$i.toml"
    printf '\n[storage]\nbackend = "postgres"\nurl = "host=%s port=%s user=ketenpoort dbname=ketenpoort"\n' "$PGDIR" "$PGPORT" >> "$WORK/config/pg$i.toml"
    rm -rf "$WORK/data-pg$i"
    cp -a "$WORK/data-pg-seed" "$WORK/data-pg$i"
    if [ "$i" != 1 ]; then rm -rf "$WORK/data-pg$i/keys"; cp -a "$WORK/data-pg1/keys" "$WORK/data-pg$i/keys"; fi
    RUST_LOG=warn "$KP" serve --config "$WORK/config/pg$i.toml" \
        --partners-addr "127.0.0.1:$PG_PORT" --console-addr "127.0.0.1:$c" >/dev/null 2>"$WORK/ketenpoort-pg$i.log" &
    echo $! > "$WORK/pg-node$i.pid"
    for _ in $(seq 150); do
        curl -s -o /dev/null "${TLS[@]}" "https://127.0.0.1:$PG_PORT/v1/whoami" && return 0
        sleep 0.1
    done
    echo "PostgreSQL node $i did not start:" >&2; tail -5 "$WORK/ketenpoort-pg$i.log" >&2; exit 1
}
url_pg() { echo "https://127.0.0.1:$1/v1/pilots/utrecht/services/dtv/vertrekdossier/5550001234"; }

pg_node 1; P1=$PG_PORT
CODE=$(curl -s -w '%{http_code}' -o "$WORK/cpg.body" "${TLS[@]}" -H 'Ketenpoort-Purpose: casusoverleg' "$(url_pg "$P1")")
if [ "$CODE" != 200 ]; then echo "C on PostgreSQL does not disclose ($CODE): $(cat "$WORK/cpg.body")"; tail -5 "$WORK/ketenpoort-pg1.log"; exit 1; fi
run Cpg1 "$(url_pg "$P1")"
# Two nodes, the connections split between them, run at the same time.
pg_node 2; P2=$PG_PORT
HALF_CONC=$(( (CONC + 1) / 2 ))
CONC=$HALF_CONC run Cpg2a "$(url_pg "$P1")" &
A_PID=$!
CONC=$HALF_CONC run Cpg2b "$(url_pg "$P2")"
wait "$A_PID"
