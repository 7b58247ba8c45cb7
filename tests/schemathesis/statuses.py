#!/usr/bin/env python3
"""Which documented (operation, status) pairs the schemathesis runs saw, from their HAR reports.

Usage: statuses.py OPENAPI_JSON HAR [HAR ...]. Prints, per operation, the documented statuses no
run answered; exits 1 if a status outside `ELSEWHERE` (answers that need a dependency down, which
the integration suite's fault tests produce) was never seen, so a documented answer the node can
no longer give, or a new one nobody tests, fails CI.
"""
import json
import re
import sys
from urllib.parse import urlsplit

# Answers these runs cannot provoke, with the tests that do: (status, operation or "*", where).
ELSEWHERE = [
    ("503", "*", "a store or bus down, a draining node: tests/it/faults, cluster/outages, drain"),
    ("429", "GET /api/rooms/{room}/events", "a second stream past the limit: faults/connections"),
    ("429", "GET /api/rooms/{room}/poll", "a second poll past the limit: faults/connections"),
    ("200", "POST /api/admin/webhooks/dead/{id}/replay", "a dead letter: webhooks/failures"),
    ("200", "GET /api/openapi.json", "left out of the runs: the openapi unit tests, docs/api"),
    ("200", "GET /api/asyncapi.json", "left out of the runs: tests/asyncapi, docs/api"),
    # State these runs reach only by luck (one run does, the next not): the seq of a message
    # that exists in that room, then is deleted.
    *[
        (status, f"{method} /api/rooms/{{room}}/messages/{{seq}}{tail}", "tests/it/room_log/rules")
        for status in ("404", "410")
        for method, tail in (("PATCH", ""), ("DELETE", ""), ("PUT", "/reactions/{key}"),
                             ("DELETE", "/reactions/{key}"))
    ],
    # Never 2xx (no dead letters here), so schemathesis's auth checks skip it; its 401 is the
    # token check every operation shares (tests/it/rest: bad tokens).
    ("401", "POST /api/admin/webhooks/dead/{id}/replay", "the shared token check: tests/it/rest"),
]


def elsewhere(method, path, status):
    op = f"{method} {path}"
    return next((w for s, o, w in ELSEWHERE if s == status and o in ("*", op)), None)


def templates(doc):
    out = []
    for path, item in doc["paths"].items():
        rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"
        for method, op in item.items():
            out.append((re.compile(rx), method.upper(), path, set(op.get("responses", {}))))
    return out


def main():
    doc = json.load(open(sys.argv[1]))
    ops = templates(doc)
    seen = {(m, p): set() for _, m, p, _ in ops}
    for har in sys.argv[2:]:
        for entry in json.load(open(har))["log"]["entries"]:
            method = entry["request"]["method"].upper()
            path = urlsplit(entry["request"]["url"]).path
            status = str(entry["response"]["status"])
            for rx, m, p, _ in ops:
                if m == method and rx.match(path):
                    seen[(m, p)].add(status)
                    break
    missing_anywhere = []
    for _, m, p, documented in sorted(ops, key=lambda o: (o[2], o[1])):
        missing = sorted(documented - seen[(m, p)])
        if missing:
            print(f"{m:6} {p}: not seen {', '.join(missing)}")
        missing_anywhere += [(m, p, s) for s in missing if not elsewhere(m, p, s)]
    total = sum(len(d) for *_, d in ops)
    got = sum(len(d & seen[(m, p)]) for _, m, p, d in ops)
    print(f"documented answers seen by schemathesis: {got} of {total}")
    for status, op, where in ELSEWHERE:
        print(f"  {status} of {op} is left to: {where}")
    if missing_anywhere:
        print(f"{len(missing_anywhere)} documented answer(s) no test produces:", file=sys.stderr)
        for m, p, s in missing_anywhere:
            print(f"  {m} {p} {s}", file=sys.stderr)
        sys.exit(1)


main()
