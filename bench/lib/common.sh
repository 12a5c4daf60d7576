# shellcheck shell=bash
#
# What the benchmarks share: private servers, the release build, the Python
# venv for the load generators, psql, process bookkeeping and the machine description.
#
# Sourced after `cd` to the repository root with `set -euo pipefail` in force.

# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh

# One state directory for the benchmarks: the servers (and their data) are reused between runs
# of any script, but never shared with scripts/test (target/test-services) or scripts/run. A
# script that must not share them (bench/cluster, so that it can run beside bench/performance)
# sets all three before sourcing this file.
readonly BENCH_STATE=${BENCH_STATE:-target/bench-services}
readonly BENCH_PG_PORT=${BENCH_PG_PORT:-55434}
readonly BENCH_REDIS_PORT=${BENCH_REDIS_PORT:-56381}
readonly BENCH_VENV=target/bench-venv
readonly BENCH_PREFIX=bench:
# Results and logs of the latest run of each script.
readonly BENCH_OUT=target/bench-results

# Pids of processes this script started (consumers, API); stopped by bench_cleanup.
BENCH_CHILDREN=()

bench_log() { printf '==> %s\n' "$*" >&2; }
bench_die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

# Stops only what this script started: its children by pid, then the servers.
bench_stop_children() {
    local pid
    for pid in "${BENCH_CHILDREN[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_CHILDREN[@]}"; do
        local i
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BENCH_CHILDREN=()
}

# shellcheck disable=SC2317  # invoked from a trap
bench_cleanup() {
    local rc=$?
    trap - EXIT
    bench_stop_children
    bl_stop_services "$BENCH_STATE" || true
    exit "$rc"
}

# Servers, environment for the binaries, migrations. Call once, after `trap bench_cleanup EXIT`.
bench_start_services() {
    bl_require_cargo
    bl_ensure_packages
    # Never inherit someone else's servers: the benchmark truncates tables.
    unset DATABASE_URL REDIS_URL
    bl_start_services "$BENCH_STATE" "$BENCH_PG_PORT" "$BENCH_REDIS_PORT"
    export BOLTLINK_ENV_FILE=/dev/null
    export REDIS_KEY_PREFIX=$BENCH_PREFIX
    export LOG_LEVEL=${LOG_LEVEL:-warn}
    mkdir -p "$BENCH_OUT"
}

# cargo build --release of the named binaries, unless --no-build was given (BENCH_BUILD=0).
bench_build() {
    if [[ ${BENCH_BUILD:-1} == 0 ]]; then
        local bin
        for bin in "$@"; do
            [[ -x target/release/$bin ]] || bench_die "target/release/$bin is missing; run without --no-build"
        done
        bench_log "using the existing release binaries (--no-build)"
        return
    fi
    local -a args=()
    local bin
    for bin in "$@"; do args+=(--bin "$bin"); done
    bench_log "cargo build --release --locked ${args[*]}"
    cargo build --release --locked "${args[@]}"
}

bench_migrate() {
    bench_log "target/release/boltlinkctl migrate"
    target/release/boltlinkctl migrate >"$BENCH_OUT/migrate.log" 2>&1 ||
        { cat "$BENCH_OUT/migrate.log" >&2; bench_die "migrations failed"; }
}

# The load generators need redis-py with the hiredis parser; nothing else from PyPI.
bench_venv() {
    if ! "$BENCH_VENV/bin/python" -c 'import redis, hiredis' >/dev/null 2>&1; then
        bench_log "creating $BENCH_VENV (redis, hiredis from PyPI)"
        python3 -m venv "$BENCH_VENV"
        "$BENCH_VENV/bin/pip" install -q 'redis>=5,<9' 'hiredis>=2,<4'
    fi
    # Used by the scripts that source this file.
    # shellcheck disable=SC2034
    BENCH_PY=$BENCH_VENV/bin/python
}

# psql against the benchmark database: unaligned, quiet, stop on the first error.
bench_psql() {
    psql "$DATABASE_URL" -X -q -At -v ON_ERROR_STOP=1 "$@"
}

# redis-cli against the benchmark's Redis: the standalone server, or the node of a Redis
# Cluster in BENCH_REDIS_NODE (a port; -c follows the cluster's redirections to a key's master).
bench_redis() {
    redis-cli -c -h 127.0.0.1 -p "${BENCH_REDIS_NODE:-$_BL_REDIS_PORT}" "$@"
}

# Pid of this benchmark's postmaster and redis-server (for CPU accounting).
bench_pg_pid() {
    local data
    data=$(readlink -f "$BENCH_STATE/pg")/data
    head -n 1 "$data/postmaster.pid"
}
bench_redis_pid() {
    cat "$BENCH_STATE/redis/redis.pid"
}

# Wall clock in seconds with nanoseconds, for timing shell steps.
bench_now() { date +%s.%N; }

bench_machine() {
    local busy
    printf 'date:     %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'commit:   %s%s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock migrations 2>/dev/null || echo ' (+ uncommitted changes in src/)')"
    printf 'machine:  %s cores, %s GiB memory, %s\n' "$(nproc)" \
        "$(free -g | awk '/^Mem:/ {print $2}')" "$(uname -sr)"
    printf 'servers:  %s, %s\n' "$("$BOLTLINK_PG_BIN/postgres" --version)" \
        "$(redis-server --version | awk '{print $3}')"
    busy=$(cut -d' ' -f1-3 /proc/loadavg)
    printf 'load avg: %s (before the run)\n' "$busy"
}
