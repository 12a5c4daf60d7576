"""Per-statement durations from a PostgreSQL log written with log_min_duration_statement = 0.

  pg_durations.py LOG START_OFFSET REQUESTS

Reads the log from byte START_OFFSET on (the lines one route's requests produced), groups the
`duration: X ms  execute|statement ...: SQL` lines by statement, and prints a JSON list (in
first-seen order) of {sql, per_request, median_ms, p90_ms}: how many times each statement ran
per request and how long it took inside PostgreSQL. A statement spanning several log lines
is identified by its first line.
"""

import json
import re
import statistics
import sys

LINE = re.compile(r"duration: ([\d.]+) ms\s+(?:execute|statement)[^:]*:\s*(.*)")


def main():
    path, start, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    order = []
    durations = {}
    for line in text.splitlines():
        m = LINE.search(line)
        if not m:
            continue
        sql = " ".join(m.group(2).split())[:110]
        if sql not in durations:
            durations[sql] = []
            order.append(sql)
        durations[sql].append(float(m.group(1)))
    out = []
    for sql in order:
        d = sorted(durations[sql])
        out.append(
            {
                "sql": sql,
                "per_request": round(len(d) / requests, 2),
                "median_ms": round(statistics.median(d), 2),
                "p90_ms": round(d[min(len(d) - 1, int(0.9 * len(d)))], 2),
            }
        )
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
