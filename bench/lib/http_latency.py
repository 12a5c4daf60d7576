"""Sequential latency of HTTP routes on one keep-alive connection (loopback only).

  http_latency.py --port 5099 --key KEY --requests 200 --warmup 20 PATH [PATH ...]

For each path: `warmup` untimed requests, then `requests` timed ones (request written to
response body fully read). Every response must be 200. Prints JSON: per path the count and
p50 / p90 / p99 / max / mean in milliseconds, and the last body (for checks by the caller).
Bounded: at most warmup + requests per path, and a deadline for the whole run.
"""

import argparse
import http.client
import json
import sys
import time


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=120, help="seconds for the whole run")
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
    headers = {"x-api-key": args.key, "accept": "application/json"}
    results = {}
    for path in args.paths:
        times = []
        body = b""
        for i in range(args.warmup + args.requests):
            if time.monotonic() > deadline:
                sys.exit(f"http_latency: deadline of {args.timeout}s passed at {path}")
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            elapsed = time.perf_counter() - t0
            if resp.status != 200:
                sys.exit(f"http_latency: GET {path} answered {resp.status}: {body[:300]!r}")
            if i >= args.warmup:
                times.append(elapsed * 1000.0)
        times.sort()
        results[path] = {
            "count": len(times),
            "p50": round(percentile(times, 50), 3),
            "p90": round(percentile(times, 90), 3),
            "p99": round(percentile(times, 99), 3),
            "max": round(times[-1], 3),
            "mean": round(sum(times) / len(times), 3),
            "body": json.loads(body) if body else None,
        }
    json.dump(results, sys.stdout)
    print()


if __name__ == "__main__":
    main()
