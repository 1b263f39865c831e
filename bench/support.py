#!/usr/bin/env python3
"""Helpers of bench/run.sh: config edits, the synthetic dossier, nginx
configs, and the report. Standard library only."""
import json
import os
import platform
import statistics
import sys


def point_backend(partners, partner, port):
    s = open(partners).read()
    i = s.index(f'id = "{partner}"')
    j = s.index("backend = ", i)
    k = s.index("\n", j)
    open(partners, "w").write(s[:j] + f'backend = "https://localhost:{port}"' + s[k:])


def dossier(path):
    d = {
        "vnummer": "5550001234",
        "naam": "Testpersoon Benchmark (synthetisch)",
        "geboortedatum": "1987-03-14",
        "nationaliteit": "Testland",
        "regievoerder": "Regievoerder DT&V (synthetisch)",
        "terugkeer": {
            "status": "in gesprek",
            "land": "Testland",
            "reisdocument": "aangevraagd",
            "gesprekken": [
                {"datum": f"2026-0{m}-1{m}", "verslag": f"vertrekgesprek {m}, synthetisch verslag van enige lengte"}
                for m in range(1, 7)
            ],
        },
        "procedures": [
            {"soort": s, "status": t, "kenmerk": f"intern-{i}"}
            for i, (s, t) in enumerate([("asiel", "afgewezen"), ("buitenschuld", "lopend"), ("herhaalde aanvraag", "afgewezen")])
        ],
        "medisch": {"bijzonderheden": "synthetisch medisch gegeven dat buiten het medisch traject niet gedeeld mag worden"},
        "intern": {"behandelaar": "Medewerker (synthetisch)", "notitie": "interne notitie die de organisatie nooit verlaat " * 14},
    }
    text = json.dumps(d, ensure_ascii=False)
    open(path, "w").write(text)
    print(f"dossier: {len(text.encode())} bytes", file=sys.stderr)


NGINX = """worker_processes 1;
pid {work}/nginx-{name}.pid;
error_log {work}/nginx-{name}.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    {upstream}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certs}/gateway.crt;
        ssl_certificate_key {certs}/gateway.key;
        ssl_client_certificate {certs}/ca.crt;
        ssl_verify_client on;
        {location}
    }}
}}
"""

BACKEND_LOCATION = """location /vertrekdossiers/ {{
            default_type application/json;
            root {work}/www;
            rewrite ^ /dossier.json break;
        }}"""

PROXY_LOCATION = """location / {{
            proxy_pass https://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_certificate {certs}/gateway-client.crt;
            proxy_ssl_certificate_key {certs}/gateway-client.key;
            proxy_ssl_trusted_certificate {certs}/ca.crt;
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }}"""


def nginx_conf(name, work, certs, backend, proxy):
    if name == "backend":
        print(NGINX.format(work=work, name=name, upstream="", port=backend, certs=certs,
                           location=BACKEND_LOCATION.format(work=work)))
    else:
        print(NGINX.format(work=work, name=name, port=proxy, certs=certs,
                           upstream=f"upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}",
                           location=PROXY_LOCATION.format(certs=certs)))


def load(work, name):
    return json.load(open(os.path.join(work, f"{name}.json")))


def half(work, rounds):
    rps = [load(work, f"C{r}")["summary"]["requestsPerSec"] for r in range(1, int(rounds) + 1)]
    print(max(1, int(statistics.median(rps) / 2)))


def report(out, work, rounds, smoke, duration, conc, half_rate, rss_kb, ticks, clk, b_ticks="0", d_ticks="0"):
    rounds = int(rounds)

    def med(prefix, key):
        vals = []
        for r in range(1, rounds + 1):
            d = load(work, f"{prefix}{r}")
            vals.append(d["summary"]["requestsPerSec"] if key == "rps" else d["latencyPercentiles"][key] * 1000)
        return statistics.median(vals)

    def non200(prefix):
        return sum(c for r in range(1, rounds + 1) for code, c in load(work, f"{prefix}{r}").get("statusCodeDistribution", {}).items() if code != "200")

    def total(prefix):
        return sum(sum(load(work, f"{prefix}{r}").get("statusCodeDistribution", {}).values()) for r in range(1, rounds + 1))

    has_d = os.path.exists(os.path.join(work, "D1.json"))
    rows = {p: {k: med(p, k) for k in ("rps", "p50", "p99")} for p in ("ABCD" if has_d else "ABC")}
    A, B, C = rows["A"], rows["B"], rows["C"]
    # The median of the rounds' differences, each round's listed beside it.
    adds = [(load(work, f"halfC{r}")["latencyPercentiles"]["p99"] - load(work, f"halfA{r}")["latencyPercentiles"]["p99"]) * 1000
            for r in range(1, rounds + 1)]
    added = statistics.median(adds)
    each = f" (rounds: {', '.join(f'{a:.2f}' for a in adds)})" if rounds > 1 else ""
    c_requests = total("C")
    cpu = (int(ticks) / int(clk)) / (c_requests / 1000) if c_requests else float("nan")
    b_requests = total("B")
    b_cpu = (int(b_ticks) / int(clk)) / (b_requests / 1000) if b_requests else float("nan")
    d_requests = total("D") if has_d else 0
    d_cpu = (int(d_ticks) / int(clk)) / (d_requests / 1000) if d_requests else float("nan")
    rss = int(rss_kb) / 1024
    audit = open(os.path.join(work, "audit.txt")).read().strip() if os.path.exists(os.path.join(work, "audit.txt")) else "(not run)"
    allocs = allocations(os.path.join(work, "allocs.txt"), 3000)
    goal = lambda ok: "met" if ok else "**not met**"
    lines = [
        f"# ketenpoort benchmark, {'smoke' if smoke == '1' else 'full'} run",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}; everything on loopback, sharing those cores. "
        f"oha: {conc} connections, {duration} per run, {rounds} round(s) interleaved A B C; medians of the rounds.",
        "Request: GET of a ~2 KiB synthetic DT&V departure dossier. C applies Utrecht's `casusoverleg` rule "
        "(gemeente-utrecht reads dtv/vertrekdossier), minimises, and makes an audit record durable (fdatasync) per exchange.",
        "",
        "| | requests/s | p50 ms | p99 ms | non-200 |",
        "|---|---:|---:|---:|---:|",
    ]
    targets = [("A back-end directly (the limit)", "A"), ("B nginx mTLS reverse proxy (baseline)", "B")]
    if has_d:
        targets.append(("D C's stack with none of its work (bench/bare_proxy.rs)", "D"))
    targets.append(("C ketenpoort", "C"))
    for name, p in targets:
        d = rows[p]
        lines.append(f"| {name} | {d['rps']:.0f} | {d['p50']:.2f} | {d['p99']:.2f} | {non200(p)} |")
    if os.path.exists(os.path.join(work, "Cpg1.json")):
        def pg_row(name, parts):
            ds = [load(work, n) for n in parts]
            rps = sum(d["summary"]["requestsPerSec"] for d in ds)
            p50 = max(d["latencyPercentiles"]["p50"] for d in ds) * 1000
            p99 = max(d["latencyPercentiles"]["p99"] for d in ds) * 1000
            bad = sum(c for d in ds for code, c in d.get("statusCodeDistribution", {}).items() if code != "200")
            lines.append(f"| {name} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {bad} |")
        pg_row("C ketenpoort on PostgreSQL, one node (one round)", ["Cpg1"])
        pg_row("C ketenpoort on PostgreSQL, two nodes (sum; the slower node's latency)", ["Cpg2a", "Cpg2b"])
    elif os.path.exists(os.path.join(work, "pg-skipped")):
        lines.append("| C on PostgreSQL | skipped: " + open(os.path.join(work, "pg-skipped")).read().strip() + " | | | |")
    lines += [
        "",
        "| figure | value | goal |",
        "|---|---:|---|",
        f"| throughput C/B | {C['rps'] / B['rps']:.2f} | ≥ 0.8: {goal(C['rps'] / B['rps'] >= 0.8)} |",
        f"| throughput C/A | {C['rps'] / A['rps']:.2f} | (X-Road users report 0.11) |",
    ]
    if rounds > 1:
        # The median hides how far rounds of one binary spread on this
        # machine (bench/README.md): each round's figures, and C/B per round,
        # whose B and C ran back to back.
        per = {p: [load(work, f"{p}{r}")["summary"]["requestsPerSec"] for r in range(1, rounds + 1)]
               for p in ("BDC" if has_d else "BC")}
        lines += [
            "| throughput per round (req/s) | " + "; ".join(f"{p}: " + ", ".join(f"{v:.0f}" for v in vs) for p, vs in per.items()) + " | |",
            "| C/B per round | " + ", ".join(f"{c / b:.2f}" for b, c in zip(per["B"], per["C"])) + " | |",
        ]
    lines += [
        f"| p99 latency C adds over A at {half_rate} req/s (half of C's peak) | {added:.2f} ms{each} | ≤ 2 ms: {goal(added <= 2)} |",
        f"| ketenpoort peak resident memory | {rss:.1f} MiB | ≤ 100 MiB: {goal(rss <= 100)} |",
        f"| CPU seconds per 1000 requests: B (nginx proxy) / C (ketenpoort) | {b_cpu:.3f} / {cpu:.3f} | |",
    ]
    if has_d:
        D = rows["D"]
        lines += [
            f"| throughput D/B: the stack alone against nginx | {D['rps'] / B['rps']:.2f} | (what C's stack allows) |",
            f"| CPU seconds per 1000 requests: D (the stack alone) | {d_cpu:.3f} | |",
        ]
    lines += [
        f"| allocations per exchange at 500 req/s (3,000 exchanges, uprobes on mimalloc) | {allocs} | |",
        "",
        "Audit store (`cargo bench --bench audit`):",
        "",
        "```",
        audit,
        "```",
    ]
    open(out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


def allocations(path, exchanges):
    """Allocations (malloc and realloc) per exchange by thread kind, from
    `perf stat --per-thread` over uprobes; "(not counted)" without them."""
    if not os.path.exists(path):
        return "(not counted)"
    by = {}
    for line in open(path):
        parts = line.split()
        if len(parts) < 3 or "kpallocs:" not in parts[2]:
            continue
        # `tokio-rt-worker-1234`: the thread's name, then its id.
        name = parts[0].rsplit("-", 1)[0]
        try:
            by[name] = by.get(name, 0) + int(parts[1].replace(",", ""))
        except ValueError:
            continue
    shown = [("tokio-rt-worker", "workers"), ("audit-writer", "writer"), ("audit-indexer", "indexer"), ("fjall:worker", "fjall")]
    return ", ".join(f"{label} {by.get(k, 0) / exchanges:.1f}" for k, label in shown) or "(none)"


def growth(tsv):
    """Resident memory growth between the middle and the end of a long run
    (bench/run.sh --long): per exchange, so a leak shows as a constant."""
    rows = [l.split("\t") for l in open(tsv) if l[:1].isdigit()]
    pts = [(int(r[0]), int(r[2])) for r in rows]
    if len(pts) < 2:
        print("too few samples for a growth figure")
        return
    end = pts[-1]
    mid = min(pts, key=lambda p: abs(p[0] - end[0] / 2))
    if mid == end:
        mid = pts[0]
    d = end[1] - mid[1]
    n = end[0] - mid[0]
    line = (f"resident memory: {mid[1] / 1024:.1f} MiB after {mid[0]:,} exchanges, "
            f"{end[1] / 1024:.1f} MiB after {end[0]:,}: {d / 1024:+.1f} MiB, "
            f"{d * 1024 / n:+.0f} bytes per exchange")
    # Two single samples move with the allocator's and the index's moods
    # (several MiB either way); a line fitted through every sample from the
    # middle on shows a leak as a slope.
    later = [p for p in pts if p[0] >= mid[0]]
    if len(later) >= 3:
        mx = statistics.mean(x for x, _ in later)
        my = statistics.mean(y for _, y in later)
        slope = sum((x - mx) * (y - my) for x, y in later) / sum((x - mx) ** 2 for x, _ in later)
        at_mid = my + slope * (mid[0] - mx)
        line += (f"; a line through the {len(later)} samples from the middle on: "
                 f"{slope * 1024:+.0f} bytes per exchange, {100 * slope * n / at_mid:+.1f}% over the second half")
    print(line)
    with open(tsv, "a") as f:
        f.write(f"# {line}\n")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"point-backend": point_backend, "dossier": dossier, "nginx-conf": nginx_conf, "half": half, "report": report,
     "growth": growth}[cmd](*args)
