#!/usr/bin/env python3
"""Heap allocations per request, per component of the request, from two
DHAT profiles of the same gateway (N1 and N2 requests): each allocation
site's stack is given to the component of its innermost frame that
belongs to one (so serde_json inside the journal counts for the journal),
and the difference between the two runs, divided by the requests between
them, is what one request costs.

  python3 benches/components.py PROFILE_A PROFILE_B REQUESTS_BETWEEN

benches/callgrind.sh runs it (TOOL=dhat); instructions per component
come from callgrind itself (COMPONENTS=1 there).
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
