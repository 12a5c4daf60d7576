# shellcheck shell=bash
#
# What bench/performance and bench/cluster share for loading a running BoltLink: wrk with
# bench/lib/load.lua, CPU time of processes from /proc, the servers' own counters from
# /metrics, what PostgreSQL counted, and the click stream's lag.
#
# Sourced after bench/lib/common.sh. The caller may set BENCH_KEY (the API key a create load
# sends), BENCH_WRK_THREADS (default 2) and BENCH_STREAMS (the click stream's keys, one per
# shard; default the one stream of CLICK_STREAM_SHARDS=1).

BENCH_WRK_THREADS=${BENCH_WRK_THREADS:-2}
BENCH_KEY=${BENCH_KEY:-}
BENCH_STREAMS=("${BENCH_PREFIX}clicks")

bench_ensure_wrk() {
    command -v wrk >/dev/null 2>&1 && return 0
    bench_log "installing wrk"
    _bl_apt install --no-install-recommends wrk || bench_die "cannot install wrk"
}

bench_wait_http() {
    local url=$1 i
    for ((i = 0; i < 150; i++)); do
        curl -sf -o /dev/null "$url" && return 0
        sleep 0.2
    done
    bench_die "$url did not answer within 30 s"
}

# bench_wrk BASE CONNECTIONS URL MODE FILE EXPECTED SECONDS [AGENT]: one wrk run of load.lua,
# bounded by SECONDS (AGENT browser, the default, or bot). Its output (with the RESULT line)
# goes to BASE.txt, the load generator's own CPU time (time(1): wrk=user+system) to BASE.wrkcpu.
bench_wrk() {
    local base=$1 conns=$2 url=$3 mode=$4 file=$5 expected=$6 secs=$7 agent=${8:-browser}
    /usr/bin/time -f 'wrk=%U+%S' -o "$base.wrkcpu" \
        wrk -t"$BENCH_WRK_THREADS" -c"$conns" -d"${secs}s" --timeout 5s --latency -s bench/lib/load.lua \
        "$url" -- "$mode" "$file" "$expected" "$BENCH_WRK_THREADS" "$BENCH_KEY" "$agent" >"$base.txt" 2>&1 ||
        { cat "$base.txt" >&2; bench_die "wrk ${base##*/} failed"; }
    grep -q '^RESULT ' "$base.txt" || { cat "$base.txt" >&2; bench_die "wrk ${base##*/} printed no RESULT"; }
    bench_log "${base##*/}: $(grep '^RESULT ' "$base.txt" | cut -c8-)"
}

# CPU clock ticks (user + system) used so far by the given pids; a pid that is gone counts 0.
bench_ticks() {
    local pid sum=0 f
    for pid in "$@"; do
        [[ -n $pid ]] || continue
        f=$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null) || continue
        # After the ")": state is field 1, utime field 12, stime field 13.
        sum=$((sum + $(awk '{ print $12 + $13 }' <<<"$f")))
    done
    echo "$sum"
}

# Ticks of a server process and everything it forked: its own, its live children's, and its
# reaped children's (cutime, cstime: fields 14 and 15 after the ")"), so that a PostgreSQL
# backend or a Redis AOF rewrite that exits between two samples still counts in full.
bench_family_ticks() {
    local pid=$1 reaped
    reaped=$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null | awk '{ print $14 + $15 } END { if (NR == 0) print 0 }')
    # shellcheck disable=SC2046  # one pid per word
    echo $(($(bench_ticks "$pid" $(pgrep -P "$pid" 2>/dev/null)) + reaped))
}

# Seconds of CPU for a number of ticks, two decimals.
bench_tick_seconds() { awk -v a="$1" -v b="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", a / b }'; }

# Entries the consumer groups have not finished on every stream of BENCH_STREAMS: lag (not
# delivered) + pending (not acknowledged); -1 while a group's lag is unknown.
bench_unfinished() {
    local stream n sum=0
    for stream in "${BENCH_STREAMS[@]}"; do
        n=$(bench_redis XINFO GROUPS "$stream" 2>/dev/null | awk '
            prev == "pending" || prev == "lag" { if ($1 ~ /^[0-9]+$/) s += $1; else nolag = 1 }
            { prev = $1 }
            END { if (nolag) print -1; else print s + 0 }')
        if ((n < 0)); then
            echo -1
            return
        fi
        sum=$((sum + n))
    done
    echo "$sum"
}

# Seconds (0.1 s resolution) until bench_unfinished is 0, at most $1 s; "-" when it never is.
# Polls every 50 ms with nothing but redis-cli, so that the polling takes little of the CPU
# the drain is measured with.
bench_seconds_to_drain() {
    local limit_us=$(($1 * 1000000)) start now
    start=${EPOCHREALTIME//[!0-9]/}
    until [[ $(bench_unfinished) == 0 ]]; do
        now=${EPOCHREALTIME//[!0-9]/}
        if ((now - start > limit_us)); then
            echo "-"
            return
        fi
        sleep 0.05
    done
    now=${EPOCHREALTIME//[!0-9]/}
    printf '%d.%d\n' $(((now - start) / 1000000)) $(((now - start) / 100000 % 10))
}

# Raw click rows the worker has written (a drained backlog is the difference: a stream entry
# carries a whole flushed batch of clicks, so the stream's own counts are entries).
bench_raw_clicks() {
    bench_psql -c "SELECT count(*) FROM click_events"
}

# bench_click_counts SINCE: what PostgreSQL holds, as key=value: counted clicks (sum of
# links.clicks and of the hourly rollups, both written by the aggregator) and the raw rows the
# worker stored with a click time at or after SINCE (epoch seconds), and how many are bots.
bench_click_counts() {
    bench_psql -v since="$1" <<'SQL'
SELECT format('links=%s rollups=%s raw=%s bots=%s',
              (SELECT coalesce(sum(clicks), 0) FROM links),
              (SELECT coalesce(sum(clicks), 0) FROM click_rollups_hourly),
              count(*), count(*) FILTER (WHERE is_bot))
FROM click_events WHERE at >= to_timestamp(:since);
SQL
}

# bench_metrics URL: one line of JSON from URL/metrics: requests served per instance
# (http_requests_total), redirects answered (302s of the redirect route), link cache hits by
# layer and misses, clicks recorded and dropped, summed over the instances (every instance
# publishes its counters, every 2 s).
bench_metrics() {
    curl -sf "$1/metrics" | python3 -c '
import json, re, sys
by, sums = {}, {"redirect_302": 0}
for line in sys.stdin:
    m = re.match(r"(\w+)(?:\{([^}]*)\})? ([0-9.e+]+)$", line.strip())
    if not m:
        continue
    name, value = m.group(1), float(m.group(3))
    labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(2) or ""))
    if name == "http_requests_total":
        inst = labels.get("instance", "?")
        by[inst] = by.get(inst, 0) + int(value)
        if labels.get("route") == "redirect" and labels.get("status") == "302":
            sums["redirect_302"] += int(value)
    elif name == "boltlink_cache_hits_total":
        k = "cache_" + labels.get("layer", "?")
        sums[k] = sums.get(k, 0) + int(value)
    elif name in ("boltlink_cache_misses_total", "boltlink_clicks_recorded_total", "boltlink_clicks_dropped_total"):
        k = name.removeprefix("boltlink_").removesuffix("_total")
        sums[k] = sums.get(k, 0) + int(value)
print(json.dumps({"requests": by, **sums}))'
}
