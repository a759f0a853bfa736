#!/usr/bin/env python3
"""Heap allocations per request, per component of the request, from two
DHAT profiles of the same gateway (N1 and N2 requests): each allocation
site's stack is given to the component of its innermost frame that
belongs to one (so serde_json inside the journal counts for the journal),
and the difference between the two runs, divided by the requests between
them, is what one request costs.

  python3 benches/components.py PROFILE_A PROFILE_B REQUESTS_BETWEEN

benches/callgrind.sh runs it (TOOL=dhat). With --callgrind, the two
profiles are callgrind's (KEEP=PREFIX of benches/callgrind.sh) and it
prints the instructions per request of each component's entry functions,
inclusive of what they call (callgrind_annotate --inclusive=yes): a
component nested in another (the journal in the settle) counts in both.
"""
import json
import re
import sys

# (component, pattern on a frame's function name), tried innermost frame
# first; within a frame, the first pattern that matches. Library frames
# decide only when no frame of the gateway's own does: a header map that
# grows inside the rate-limit headers counts for the headers.
COMPONENTS = [
    ("journal", r"store::journal::Journal|billing::record::.*Serialize"),
    ("writer", r"store::writer|SqliteStore|PgStore|sqlx|sqlite3"),
    ("access log, metrics", r"RequestCtx::finish|tollgate::metrics::|tollgate::logging|ProxyHttp>::logging"),
    ("headers", r"limits::headers|add_gateway_headers|upstream::response_head|write_head|respond_with"),
    ("limits", r"tollgate::limits::|exchange::admit::local"),
    ("hold", r"Billing::admit|exchange::admit|billing::holds|Ledger::post_hold|billing::lots"),
    ("settle", r"RequestCtx::settle|Billing::settle|Ledger::settle|usage_totals|Billing::charge"),
    ("usage scan", r"formats::field_scan|formats::usage|formats::estimate|Passthrough::finish"),
    ("auth", r"tollgate::auth::|admit::authenticate|admit::known|Billing::authenticate|Directory::key"),
    ("plan", r"tollgate::exchange::|tollgate::routing::|tollgate::formats::"),
    ("relay", r"tollgate::proxy::(exchange::relay|failover|upstream|reading|translated)"),
    ("request (head, body)", r"tollgate::proxy::(exchange::|downstream|context::RequestCtx::new)|ProxyHttp>::(early_)?request_filter"),
    ("pingora, tokio, http", r"pingora|tokio|hyper|h2::|http::"),
]
PATTERNS = [(name, re.compile(p)) for name, p in COMPONENTS]

# Each component's entry functions, for callgrind's inclusive counts.
ENTRIES = [
    ("auth (key digest, lookup)", r"tollgate::exchange::admit::known$"),
    ("plan (body, route, translation)", r"tollgate::exchange::plan(_with_access)?$"),
    ("hold", r"tollgate::exchange::admit::hold$"),
    ("limits", r"tollgate::limits::Limiter::admit$"),
    ("headers (limits' values)", r"tollgate::limits::headers::for_standing$"),
    ("headers (into the head)", r"add_gateway_headers$|tollgate::proxy::upstream::response_head$"),
    ("usage scan", r"Passthrough::on_chunk$|Passthrough::finish$"),
    ("settle (with journal)", r"tollgate::proxy::context::RequestCtx::settle$"),
    ("journal", r"Journal as tollgate::billing::record::Sink>::record$"),
    ("access log, metrics", r"tollgate::proxy::context::RequestCtx::finish$"),
    ("writer (store's runtime)", r"tollgate::store::writer::run::\{\{closure\}\}$|ExecuteIter as core::iter::traits::iterator::Iterator>::next$"),
]


def inclusive(path):
    import subprocess
    out = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--inclusive=yes", "--threshold=100", path],
        capture_output=True, text=True,
    ).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)", line)
        if m and not line.strip().startswith("=>"):
            name = re.sub(r" \[.*\]$", "", m.group(2))
            name = re.sub(r"^.*?\.(rs|c|S):", "", name)
            d[name] = d.get(name, 0) + int(m.group(1).replace(",", ""))
    return d


def callgrind_table(a_path, b_path, between):
    a, b = inclusive(a_path), inclusive(b_path)
    print(f"{'component':<34} {'instructions':>12}   (per request, inclusive)")
    for name, pattern in ENTRIES:
        p = re.compile(pattern)
        n = sum(b[k] - a.get(k, 0) for k in b if p.search(k)) / between
        print(f"{name:<34} {n:>12.0f}")


def component(frames):
    own, libraries = PATTERNS[:-1], PATTERNS[-1:]
    for patterns in (own, libraries):
        for frame in frames:
            for name, pattern in patterns:
                if pattern.search(frame):
                    return name
    return "other"


def per_component(path):
    with open(path) as f:
        d = json.load(f)
    table = d["ftbl"]
    counts, nbytes = {}, {}
    for pp in d["pps"]:
        # A frame string: "0xADDR: function (file:line)".
        frames = [re.sub(r"^0x[0-9A-Fa-f]+: ", "", table[i]) for i in pp["fs"]]
        name = component(frames)
        counts[name] = counts.get(name, 0) + pp["tbk"]
        nbytes[name] = nbytes.get(name, 0) + pp["tb"]
    return counts, nbytes


def main():
    if sys.argv[1] == "--callgrind":
        callgrind_table(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    a_path, b_path, between = sys.argv[1], sys.argv[2], int(sys.argv[3])
    (ca, ba), (cb, bb) = per_component(a_path), per_component(b_path)
    names = [n for n, _ in COMPONENTS] + ["other"]
    print(f"{'component':<24} {'allocations':>12} {'bytes':>10}   (per request)")
    total_c = total_b = 0.0
    for name in names:
        c = (cb.get(name, 0) - ca.get(name, 0)) / between
        b = (bb.get(name, 0) - ba.get(name, 0)) / between
        total_c += c
        total_b += b
        print(f"{name:<24} {c:>12.1f} {b:>10.0f}")
    print(f"{'total':<24} {total_c:>12.1f} {total_b:>10.0f}")


if __name__ == "__main__":
    main()
