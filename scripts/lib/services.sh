# shellcheck shell=bash
#
# Private PostgreSQL and Redis for development and CI.
#
# Sourced by scripts/test and scripts/run. Everything here must behave the same with and
# without `set -euo pipefail` in the caller, so every command whose failure is expected is
# guarded explicitly and every possibly-unset variable is read with a default.
#
# Public functions:
#   bl_require_cargo                    fail clearly when the Rust toolchain is missing
#   bl_ensure_packages                  apt-get install whatever system packages are missing
#   bl_start_services DIR PGPORT RPORT  start (or reuse) private servers, export their URLs
#   bl_stop_services DIR                stop what bl_start_services started in this process
#   bl_start_replica DIR PORT           a streaming replica of that PostgreSQL (for the tests
#                                       of DATABASE_READ_URL), URL in BOLTLINK_TEST_REPLICA_URL
#   bl_start_redis_cluster DIR PORT     a Redis Cluster of 3 masters with a replica each on
#                                       PORT..PORT+5 (bus +1000), URLs in
#                                       BOLTLINK_TEST_REDIS_CLUSTER_URL
#
# The servers are private on purpose: tests create and drop data freely, so they must never
# touch a database someone cares about, and CI machines start with nothing running.

# What bl_start_services started, keyed "<state-dir>:pg" / "<state-dir>:redis". Kept in the
# shell rather than on disk so that a second invocation reusing the same servers never stops
# them from under the first one. -g: this file may be sourced from inside a function.
declare -gA _BL_STARTED 2>/dev/null || true
_BL_APT_UPDATED=${_BL_APT_UPDATED:-0}
# Upper bound for a server to answer after start. PostgreSQL replaying WAL after a crash or
# Redis loading a big AOF can be slow, but anything beyond this is a real problem.
BL_SERVICE_TIMEOUT=${BL_SERVICE_TIMEOUT:-30}
# The address every server listens on and is reached at. Loopback for the tests and scripts/run;
# scripts/fleet-e2e sets the address of a bridge in a network namespace of its own, so that
# containers on the bridge reach the servers (PostgreSQL then also accepts password logins
# from the bridge's subnet, and the Redis Cluster's nodes announce that address).
BL_SERVICES_ADDR=${BL_SERVICES_ADDR:-127.0.0.1}

_bl_log() { printf 'services: %s\n' "$*" >&2; }
_bl_err() { printf 'services: error: %s\n' "$*" >&2; }

# Prints the last lines of a log so a failure is diagnosable from CI output alone.
_bl_show_log() {
    local file=$1
    if [[ -s $file ]]; then
        printf 'services: ---- last lines of %s ----\n' "$file" >&2
        tail -n 40 "$file" >&2 || true
        printf 'services: ---- end of %s ----\n' "$file" >&2
    else
        printf 'services: (%s is empty or missing)\n' "$file" >&2
    fi
}

# rustup installs cargo under ~/.cargo/bin, which non-login shells (CI runners, sudo) often
# lack in PATH. There is no other supported way to get the toolchain, so only point at rustup.
bl_require_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        local cargo_home=${CARGO_HOME:-${HOME:-/root}/.cargo}
        if [[ -x $cargo_home/bin/cargo ]]; then
            export PATH="$cargo_home/bin:$PATH"
        fi
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        _bl_err "cargo not found in PATH (nor in \${CARGO_HOME:-~/.cargo}/bin)."
        _bl_err "Install the Rust toolchain with rustup (https://rustup.rs); Debian's packages are not supported."
        return 1
    fi
    # fmt and clippy are rustup components that minimal profiles leave out; adding them is
    # cheap and avoids a confusing "no such command" halfway through the test run.
    local component
    for component in rustfmt clippy; do
        local probe=fmt
        [[ $component == clippy ]] && probe=clippy
        if ! cargo "$probe" --version >/dev/null 2>&1; then
            if command -v rustup >/dev/null 2>&1; then
                _bl_log "adding rustup component $component"
                rustup component add "$component" >&2 || return 1
            else
                _bl_err "cargo $probe is unavailable and rustup is not in PATH"
                return 1
            fi
        fi
    done
}

# Highest installed PostgreSQL server version's bin directory (Debian keeps them side by side
# under /usr/lib/postgresql/<major>/bin and only puts wrappers in /usr/bin).
_bl_pg_bin() {
    local dir best=
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x $dir/initdb && -x $dir/pg_ctl ]] || continue
        if [[ -z $best ]] || [[ $(printf '%s\n%s\n' "$best" "$dir" | sort -V | tail -n 1) == "$dir" ]]; then
            best=$dir
        fi
    done
    [[ -n $best ]] || return 1
    printf '%s\n' "$best"
}

# apt-get needs root; fall back to passwordless sudo so a developer can run the scripts as
# themselves, and fail with a clear message otherwise instead of a prompt CI cannot answer.
_bl_apt() {
    local -a cmd=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0
        -o DPkg::Lock::Timeout=300 "$@")
    if [[ $EUID -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            cmd=(sudo -n "${cmd[@]}")
        else
            _bl_err "installing packages needs root (or passwordless sudo): apt-get $*"
            return 1
        fi
    fi
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/bl-apt.XXXXXX")
    if ! "${cmd[@]}" </dev/null >"$log" 2>&1; then
        _bl_err "apt-get $* failed"
        _bl_show_log "$log"
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

# Installs each missing system package. Presence is checked by the files we actually use, not
# by dpkg, so a toolchain installed some other way (e.g. a postgres built from source) counts.
bl_ensure_packages() {
    local -a missing=()
    # Only for the tests (scripts/test sets it): the QR code decoders of the QR tests.
    if [[ ${BL_TEST_PACKAGES:-} == 1 ]]; then
        command -v zbarimg >/dev/null 2>&1 || missing+=(zbar-tools)
        command -v rsvg-convert >/dev/null 2>&1 || missing+=(librsvg2-bin)
    fi
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null ||
        missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    # redis-server depends on redis-tools, but a hand-made install may lack the client.
    command -v redis-cli >/dev/null 2>&1 || [[ " ${missing[*]} " == *" redis-server "* ]] || missing+=(redis-tools)
    command -v ps >/dev/null 2>&1 || missing+=(procps)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    [[ -s /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)

    ((${#missing[@]})) || return 0

    if [[ $_BL_APT_UPDATED != 1 ]]; then
        _bl_log "apt-get update"
        _bl_apt update || return 1
        _BL_APT_UPDATED=1
    fi
    local pkg
    for pkg in "${missing[@]}"; do
        _bl_log "installing $pkg"
        # Recommends would drag in e.g. sysstat for postgresql; nothing here needs them.
        _bl_apt install --no-install-recommends "$pkg" || return 1
    done
}

# PostgreSQL refuses to run as root, so as root everything touching the cluster runs as the
# `postgres` system user. `cd /` because initdb and pg_ctl fail when they cannot resolve the
# current directory, which the postgres user usually cannot read (e.g. a clone under /root).
_bl_as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Where the cluster lives. Normally <state>/pg; but when the postgres user cannot traverse the
# state dir (clone under a 0700 home) or the socket path would exceed the kernel's 107-byte
# limit, the cluster goes to /var/tmp and <state>/pg becomes a symlink to it so it is still
# found, reused and inspectable from the state dir.
_bl_pg_root() {
    local state=$1 port=$2 root=$1/pg
    if [[ -L $root ]]; then
        readlink -f "$root"
        return
    fi
    local ok=1
    if [[ $EUID -eq 0 ]] && ! _bl_as_pg test -x "$state" 2>/dev/null; then
        ok=0
    fi
    local sock="$root/run/.s.PGSQL.$port"
    ((${#sock} < 100)) || ok=0
    if ((ok)) || [[ -d $root ]]; then
        printf '%s\n' "$root"
        return
    fi
    local alt
    alt="/var/tmp/boltlink-pg-$(printf '%s' "$state" | cksum | cut -d' ' -f1)"
    mkdir -p "$alt"
    ln -sfn "$alt" "$root"
    _bl_log "the postgres user cannot use $root directly; cluster lives in $alt (symlinked)"
    printf '%s\n' "$alt"
}

# True when something already accepts TCP connections on BL_SERVICES_ADDR:<port>. Checked before
# starting a server so that a foreign process on that port cannot pass our readiness probe
# and silently become "our" database.
_bl_port_busy() {
    (exec 3<>"/dev/tcp/$BL_SERVICES_ADDR/$1") 2>/dev/null
}

# Starts or reuses the cluster; sets _BL_PG_PORT and _BL_PG_DATA, records what it started.
_bl_pg_start() {
    local state=$1 port=$2 pgbin=$3
    local root data run log
    root=$(_bl_pg_root "$state" "$port") || return 1
    data=$root/data run=$root/run log=$root/postgres.log

    # A data dir from another major version needs that version's binaries.
    if [[ -f $data/PG_VERSION ]]; then
        local ver
        ver=$(<"$data/PG_VERSION")
        if [[ $pgbin != "/usr/lib/postgresql/$ver/bin" ]]; then
            if [[ -x /usr/lib/postgresql/$ver/bin/pg_ctl ]]; then
                pgbin=/usr/lib/postgresql/$ver/bin
            else
                _bl_err "$data was created by PostgreSQL $ver, which is not installed; remove $root to start over"
                return 1
            fi
        fi
    fi
    BOLTLINK_PG_BIN=$pgbin
    _BL_PG_DATA=$data

    mkdir -p "$root"
    if [[ $EUID -eq 0 ]]; then
        chown postgres:postgres "$root"
    fi

    if [[ -f $data/PG_VERSION ]] && _bl_as_pg "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        # Reuse: trust the running server's own record of its port over the requested one.
        _BL_PG_PORT=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null)
        [[ $_BL_PG_PORT =~ ^[0-9]+$ ]] || _BL_PG_PORT=$port
        _bl_log "reusing PostgreSQL on $BL_SERVICES_ADDR:$_BL_PG_PORT ($data)"
        return 0
    fi

    if [[ ! -f $data/PG_VERSION ]]; then
        if [[ -e $data ]]; then
            # Left over from an interrupted initdb; nothing in it is worth keeping.
            rm -rf "$data"
        fi
        _bl_log "initdb $data"
        local superuser=postgres
        [[ $EUID -eq 0 ]] || superuser=$(id -un)
        # peer on the socket lets us administer without a password; scram on TCP means the
        # DATABASE_URL the application uses is checked exactly as in production.
        if ! _bl_as_pg "$pgbin/initdb" -D "$data" -U "$superuser" -E UTF8 --no-locale \
            --auth-local=peer --auth-host=scram-sha-256 >"$state/initdb.log" 2>&1; then
            _bl_err "initdb failed"
            _bl_show_log "$state/initdb.log"
            return 1
        fi
        printf "\ninclude_if_exists = 'boltlink.conf'\n" | _bl_as_pg tee -a "$data/postgresql.conf" >/dev/null
        if [[ $BL_SERVICES_ADDR != 127.0.0.1 ]]; then
            # Clients on the address's own subnet (a bridge's containers), by password.
            printf 'host all all samenet scram-sha-256\n' | _bl_as_pg tee -a "$data/pg_hba.conf" >/dev/null
        fi
    fi

    # Rewritten on every start so a changed port or state-dir location takes effect.
    # BL_PG_FSYNC=off (scripts/test) for a throwaway cluster; on otherwise (scripts/run).
    case ${BL_PG_FSYNC:-on} in
    on | off) ;;
    *) _bl_err "BL_PG_FSYNC must be on or off, not ${BL_PG_FSYNC}"; return 1 ;;
    esac
    _bl_as_pg mkdir -p "$run"
    _bl_as_pg tee "$data/boltlink.conf" >/dev/null <<EOF
# Written by scripts/lib/services.sh on every start; edits are overwritten.
listen_addresses = '$BL_SERVICES_ADDR'
port = $port
unix_socket_directories = '$run'
fsync = ${BL_PG_FSYNC:-on}
max_connections = 300
shared_buffers = 128MB
# A streaming replica (bl_start_replica) that falls behind can still catch up from here.
wal_keep_size = 256MB
EOF

    if _bl_port_busy "$port"; then
        _bl_err "$BL_SERVICES_ADDR:$port is already in use by another process; free it or set DATABASE_URL"
        return 1
    fi
    _bl_log "starting PostgreSQL on $BL_SERVICES_ADDR:$port ($data)"
    # -W: return at once; bl_start_services waits for PostgreSQL and Redis together.
    if ! _bl_as_pg "$pgbin/pg_ctl" -D "$data" -l "$log" -W start >"$state/pg_ctl.log" 2>&1; then
        _bl_err "pg_ctl start failed"
        _bl_show_log "$state/pg_ctl.log"
        _bl_show_log "$log"
        return 1
    fi
    _BL_STARTED["$state:pg"]="$pgbin|$data"
    _BL_PG_PORT=$port
}

# Creates (or repairs) the application's role and database; cheap enough to run every time.
_bl_pg_provision() {
    local pgbin=$1 data=$2 port=$3 superuser=postgres
    [[ $EUID -eq 0 ]] || superuser=$(id -un)
    local run
    run=$(dirname "$data")/run
    local -a psql=("$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$run" -p "$port" -U "$superuser" -d postgres)
    _bl_as_pg "${psql[@]}" <<'SQL' >/dev/null
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'boltlink') THEN
        CREATE ROLE boltlink LOGIN SUPERUSER PASSWORD 'boltlink';
    ELSE
        ALTER ROLE boltlink LOGIN SUPERUSER PASSWORD 'boltlink';
    END IF;
END
$$;
SELECT 'CREATE DATABASE boltlink OWNER boltlink'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'boltlink') \gexec
SQL
}

# Redis's protected mode refuses clients from other addresses when there is no password: on
# loopback it stays on; on a bridge (BL_SERVICES_ADDR, scripts/fleet-e2e) the namespace keeps
# strangers out instead.
_bl_protected_mode() {
    if [[ $BL_SERVICES_ADDR == 127.0.0.1 ]]; then echo yes; else echo no; fi
}

_bl_pid_alive() {
    local pid=$1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# Starts or reuses redis-server; sets _BL_REDIS_PORT, records what it started.
_bl_redis_start() {
    local state=$1 port=$2 server=$3
    local dir=$state/redis
    local pidfile=$dir/redis.pid portfile=$dir/redis.port log=$state/redis.log
    mkdir -p "$dir"

    local pid=
    [[ -f $pidfile ]] && pid=$(<"$pidfile")
    if _bl_pid_alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]]; then
        _BL_REDIS_PORT=$(cat "$portfile" 2>/dev/null || true)
        [[ $_BL_REDIS_PORT =~ ^[0-9]+$ ]] || _BL_REDIS_PORT=$port
        _bl_log "reusing Redis on $BL_SERVICES_ADDR:$_BL_REDIS_PORT (pid $pid)"
        return 0
    fi
    # A pidfile whose process is gone (crash, reboot) would otherwise confuse the early-death
    # check while waiting.
    rm -f "$pidfile"

    if _bl_port_busy "$port"; then
        _bl_err "$BL_SERVICES_ADDR:$port is already in use by another process; free it or set REDIS_URL"
        return 1
    fi
    _bl_log "starting Redis on $BL_SERVICES_ADDR:$port ($dir)"
    # No config file on purpose: the distribution's /etc/redis/redis.conf must not leak in.
    # AOF with everysec matches production durability for the click stream; RDB is off so a
    # test run never pauses on a background save.
    if ! "$server" --bind "$BL_SERVICES_ADDR" --port "$port" --protected-mode "$(_bl_protected_mode)" \
        --dir "$dir" --appendonly yes --appendfsync everysec --save '' \
        --daemonize yes --pidfile "$pidfile" --logfile "$log" </dev/null >"$state/redis-start.log" 2>&1; then
        # Option errors are printed before the logfile is opened.
        _bl_err "redis-server failed to start"
        _bl_show_log "$state/redis-start.log"
        _bl_show_log "$log"
        return 1
    fi
    printf '%s\n' "$port" >"$portfile"
    _BL_STARTED["$state:redis"]="$pidfile|$port"
    _BL_REDIS_PORT=$port
}

# Polls both servers against one deadline (they start in parallel) and fails fast when a
# server process we started has already died, instead of sitting out the whole timeout.
_bl_wait_ready() {
    local state=$1 pgbin=$2 pg_port=$3 redis_port=$4 data=$5
    local pg_ok=1 redis_ok=1
    [[ -n $pg_port ]] && pg_ok=0
    [[ -n $redis_port ]] && redis_ok=0
    local deadline=$((SECONDS + BL_SERVICE_TIMEOUT))
    local pidfile=$state/redis/redis.pid
    local redis_seen_at=$SECONDS pg_seen_at=$SECONDS

    while :; do
        if ((!pg_ok)) && "$pgbin/pg_isready" -q -h "$BL_SERVICES_ADDR" -p "$pg_port" -t 2 >/dev/null 2>&1; then
            pg_ok=1
        fi
        if ((!redis_ok)) && [[ $(redis-cli -h "$BL_SERVICES_ADDR" -p "$redis_port" ping 2>/dev/null) == PONG ]]; then
            redis_ok=1
        fi
        ((pg_ok && redis_ok)) && return 0

        if ((!pg_ok)); then
            if _bl_as_pg "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
                pg_seen_at=$SECONDS
            elif ((SECONDS - pg_seen_at > 3)); then
                # `pg_ctl start -W` returns before the postmaster has written postmaster.pid,
                # so "not running" right after the start is expected; for seconds, it exited.
                _bl_err "PostgreSQL exited during startup"
                _bl_show_log "$(dirname "$data")/postgres.log"
                return 1
            fi
        fi
        if ((!redis_ok)); then
            local pid=
            [[ -f $pidfile ]] && pid=$(<"$pidfile")
            if _bl_pid_alive "$pid"; then
                redis_seen_at=$SECONDS
            elif ((SECONDS - redis_seen_at > 3)); then
                # Daemonized redis writes its pidfile right away; no live pid for a few
                # seconds means it exited (port taken, bad option, unwritable dir).
                _bl_err "Redis exited during startup"
                _bl_show_log "$state/redis.log"
                return 1
            fi
        fi

        if ((SECONDS >= deadline)); then
            if ((!pg_ok)); then
                _bl_err "PostgreSQL did not answer on $BL_SERVICES_ADDR:$pg_port within ${BL_SERVICE_TIMEOUT}s"
                _bl_show_log "$(dirname "$data")/postgres.log"
            fi
            if ((!redis_ok)); then
                _bl_err "Redis did not answer on $BL_SERVICES_ADDR:$redis_port within ${BL_SERVICE_TIMEOUT}s"
                _bl_show_log "$state/redis.log"
            fi
            return 1
        fi
        sleep 0.2
    done
}

# bl_start_services <state-dir> <pg-port> <redis-port>
# Caller-provided DATABASE_URL / REDIS_URL win: then that server is neither started nor touched.
bl_start_services() {
    if (($# != 3)); then
        _bl_err "usage: bl_start_services <state-dir> <pg-port> <redis-port>"
        return 1
    fi
    local state
    mkdir -p "$1" && state=$(cd "$1" && pwd -P) || return 1
    local pg_port=$2 redis_port=$3

    # Exported even when the caller brings its own servers: tests spawn throwaway instances.
    local pgbin redis_server
    pgbin=$(_bl_pg_bin) || pgbin=
    redis_server=$(command -v redis-server 2>/dev/null) || redis_server=
    [[ -n $pgbin ]] && export BOLTLINK_PG_BIN=$pgbin
    [[ -n $redis_server ]] && export BOLTLINK_REDIS_SERVER=$redis_server

    local want_pg=0 want_redis=0
    [[ -z ${DATABASE_URL:-} ]] && want_pg=1
    [[ -z ${REDIS_URL:-} ]] && want_redis=1

    _BL_PG_PORT='' _BL_REDIS_PORT='' _BL_PG_DATA=''
    # Redis first: its start is instant and fails fast (port taken), before there is a
    # half-started postmaster to clean up.
    if ((want_redis)); then
        if [[ -z $redis_server ]]; then
            _bl_err "redis-server not found (run bl_ensure_packages or set REDIS_URL)"
            return 1
        fi
        _bl_redis_start "$state" "$redis_port" "$redis_server" || return 1
    else
        _bl_log "using REDIS_URL from the environment"
    fi

    if ((want_pg)); then
        if [[ -z $pgbin ]]; then
            _bl_err "no PostgreSQL under /usr/lib/postgresql/*/bin (run bl_ensure_packages or set DATABASE_URL)"
            return 1
        fi
        if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
            _bl_err "running as root but there is no 'postgres' system user to run PostgreSQL as"
            return 1
        fi
        _bl_pg_start "$state" "$pg_port" "$pgbin" || return 1
        pgbin=$BOLTLINK_PG_BIN # may have switched to the data dir's major version
    else
        _bl_log "using DATABASE_URL from the environment"
    fi
    _bl_wait_ready "$state" "$pgbin" "$_BL_PG_PORT" "$_BL_REDIS_PORT" "$_BL_PG_DATA" || return 1

    if ((want_pg)); then
        if ! _bl_pg_provision "$pgbin" "$_BL_PG_DATA" "$_BL_PG_PORT"; then
            _bl_err "could not create the boltlink role/database"
            return 1
        fi
        export DATABASE_URL="postgres://boltlink:boltlink@$BL_SERVICES_ADDR:$_BL_PG_PORT/boltlink"
    fi
    if ((want_redis)); then
        export REDIS_URL="redis://$BL_SERVICES_ADDR:$_BL_REDIS_PORT/"
    fi
}

# bl_start_replica <state-dir> <port>
# A hot standby streaming from the PostgreSQL bl_start_services started (none when DATABASE_URL
# came from the environment: then there is no replica, and the tests that need one say so).
# Exports BOLTLINK_TEST_REPLICA_URL, the replica's URL of the boltlink database.
bl_start_replica() {
    if (($# != 2)); then
        _bl_err "usage: bl_start_replica <state-dir> <port>"
        return 1
    fi
    local state port=$2
    state=$(cd "$1" && pwd -P) || return 1
    if [[ -z ${_BL_PG_DATA:-} || -z ${_BL_PG_PORT:-} ]]; then
        _bl_log "no read replica: PostgreSQL comes from DATABASE_URL, not from bl_start_services"
        return 0
    fi
    local pgbin=$BOLTLINK_PG_BIN primary_run superuser=postgres
    [[ $EUID -eq 0 ]] || superuser=$(id -un)
    primary_run=$(dirname "$_BL_PG_DATA")/run
    local root
    root=$(dirname "$_BL_PG_DATA")-replica
    local data=$root/data run=$root/run log=$root/postgres.log

    if [[ -f $data/PG_VERSION ]] && _bl_as_pg "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        port=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null)
        _bl_log "reusing the PostgreSQL replica on $BL_SERVICES_ADDR:$port ($data)"
    else
        # A standby left stopped may be a copy of an older cluster: copying afresh takes
        # seconds and cannot be wrong.
        rm -rf "$root"
        mkdir -p "$root"
        if [[ $EUID -eq 0 ]]; then
            chown postgres:postgres "$root"
        fi
        _bl_as_pg mkdir -p "$run"
        if _bl_port_busy "$port"; then
            _bl_err "$BL_SERVICES_ADDR:$port is already in use by another process"
            return 1
        fi
        _bl_log "pg_basebackup of $BL_SERVICES_ADDR:$_BL_PG_PORT into $data"
        # -R: standby.signal and primary_conninfo (the primary's socket, peer authentication).
        if ! _bl_as_pg "$pgbin/pg_basebackup" -h "$primary_run" -p "$_BL_PG_PORT" -U "$superuser" \
            -D "$data" -R -X stream -c fast >"$state/basebackup.log" 2>&1; then
            _bl_err "pg_basebackup failed"
            _bl_show_log "$state/basebackup.log"
            return 1
        fi
        # The copy brought the primary's boltlink.conf along; this one is the replica's.
        _bl_as_pg tee "$data/boltlink.conf" >/dev/null <<EOF
# Written by scripts/lib/services.sh (bl_start_replica); edits are overwritten.
listen_addresses = '$BL_SERVICES_ADDR'
port = $port
unix_socket_directories = '$run'
fsync = ${BL_PG_FSYNC:-on}
max_connections = 300
shared_buffers = 128MB
hot_standby = on
EOF
        _bl_log "starting the PostgreSQL replica on $BL_SERVICES_ADDR:$port ($data)"
        if ! _bl_as_pg "$pgbin/pg_ctl" -D "$data" -l "$log" -W start >"$state/pg_ctl-replica.log" 2>&1; then
            _bl_err "pg_ctl start failed for the replica"
            _bl_show_log "$state/pg_ctl-replica.log"
            _bl_show_log "$log"
            return 1
        fi
        _BL_STARTED["$state:replica"]="$pgbin|$data"
    fi
    local deadline=$((SECONDS + BL_SERVICE_TIMEOUT))
    until "$pgbin/pg_isready" -q -h "$BL_SERVICES_ADDR" -p "$port" -t 2 >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            _bl_err "the PostgreSQL replica did not answer on $BL_SERVICES_ADDR:$port within ${BL_SERVICE_TIMEOUT}s"
            _bl_show_log "$log"
            return 1
        fi
        sleep 0.2
    done
    export BOLTLINK_TEST_REPLICA_URL="postgres://boltlink:boltlink@$BL_SERVICES_ADDR:$port/boltlink"
}

# bl_stop_services <state-dir>
# Safe to call from an EXIT trap at any point, including after a partial or failed start.
bl_stop_services() {
    if (($# != 1)); then
        _bl_err "usage: bl_stop_services <state-dir>"
        return 1
    fi
    [[ -d $1 ]] || return 0
    local state rc=0
    state=$(cd "$1" && pwd -P) || return 0

    local rec=${_BL_STARTED["$state:redis"]:-}
    if [[ -n $rec ]]; then
        local pidfile=${rec%%|*} port=${rec##*|} pid=
        [[ -f $pidfile ]] && pid=$(<"$pidfile")
        _bl_log "stopping Redis on $BL_SERVICES_ADDR:$port"
        # AOF is already on disk (everysec); "nosave" just skips writing an RDB we don't use.
        redis-cli -h "$BL_SERVICES_ADDR" -p "$port" shutdown nosave >/dev/null 2>&1 || true
        local i
        for ((i = 0; i < 50; i++)); do
            _bl_pid_alive "$pid" || break
            sleep 0.2
        done
        if _bl_pid_alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            sleep 1
            if _bl_pid_alive "$pid"; then
                _bl_err "Redis (pid $pid) did not stop; killing it"
                kill -KILL "$pid" 2>/dev/null || true
                rc=1
            fi
        fi
        unset '_BL_STARTED[$state:redis]'
    fi

    rec=${_BL_STARTED["$state:cluster"]:-}
    if [[ -n $rec ]]; then
        _bl_log "stopping the Redis Cluster nodes on ports $rec"
        local port
        for port in $rec; do
            redis-cli -h "$BL_SERVICES_ADDR" -p "$port" shutdown nosave >/dev/null 2>&1 || true
        done
        unset '_BL_STARTED[$state:cluster]'
    fi

    rec=${_BL_STARTED["$state:replica"]:-}
    if [[ -n $rec ]]; then
        local pgbin=${rec%%|*} data=${rec##*|}
        _bl_log "stopping the PostgreSQL replica ($data)"
        if ! _bl_as_pg "$pgbin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 &&
            _bl_as_pg "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
            _bl_err "pg_ctl stop failed for $data"
            rc=1
        fi
        unset '_BL_STARTED[$state:replica]'
    fi

    rec=${_BL_STARTED["$state:pg"]:-}
    if [[ -n $rec ]]; then
        local pgbin=${rec%%|*} data=${rec##*|}
        _bl_log "stopping PostgreSQL ($data)"
        local i stopped=0
        for ((i = 0; i < 20; i++)); do
            if _bl_as_pg "$pgbin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1; then
                stopped=1
                break
            fi
            # pg_ctl only finds a server through postmaster.pid, which a postmaster launched
            # a moment ago (start failed elsewhere right after) may not have written yet.
            [[ -f $data/postmaster.pid ]] && break
            sleep 0.25
        done
        if ((!stopped)) && _bl_as_pg "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
            _bl_err "pg_ctl stop failed for $data"
            rc=1
        fi
        unset '_BL_STARTED[$state:pg]'
    fi
    return "$rc"
}

# Whether every node says cluster_state:ok and the cluster has three masters.
_bl_cluster_ok() {
    local first=$1 port
    shift
    for port in "$@"; do
        redis-cli -h "$BL_SERVICES_ADDR" -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
    [[ $(redis-cli -h "$BL_SERVICES_ADDR" -p "$first" cluster nodes 2>/dev/null | grep -c master) -eq 3 ]]
}

# bl_start_redis_cluster <state-dir> <first-port>
# A Redis Cluster of 3 masters, each with one replica: six servers on BL_SERVICES_ADDR, ports
# first-port..first-port+5, formed with `redis-cli --cluster create` (or reused when they
# already run). A short cluster-node-timeout (2 s) so that a failover in a test takes seconds.
# Each node's cluster bus listens on its port + 1000 (not Redis's default + 10000), so that a
# first-port below 31768 keeps both out of the kernel's ephemeral range, where a client
# socket of the tests could hold a port when a node starts.
# Exports BOLTLINK_TEST_REDIS_CLUSTER_URL, the six nodes' URLs comma-separated, as REDIS_URL
# takes them. bl_stop_services stops what this started.
bl_start_redis_cluster() {
    if (($# != 2)); then
        _bl_err "usage: bl_start_redis_cluster <state-dir> <first-port>"
        return 1
    fi
    local state server
    mkdir -p "$1/redis-cluster" && state=$(cd "$1" && pwd -P) || return 1
    server=$(command -v redis-server 2>/dev/null) || {
        _bl_err "redis-server not found (run bl_ensure_packages)"
        return 1
    }
    local first=$2 i port dir pid started=() nodes=() urls=()
    for ((i = 0; i < 6; i++)); do
        port=$((first + i))
        dir=$state/redis-cluster/$port
        mkdir -p "$dir"
        nodes+=("$BL_SERVICES_ADDR:$port")
        urls+=("redis://$BL_SERVICES_ADDR:$port/")
        pid=
        [[ -f $dir/redis.pid ]] && pid=$(<"$dir/redis.pid")
        if _bl_pid_alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]]; then
            continue
        fi
        rm -f "$dir/redis.pid"
        if _bl_port_busy "$port"; then
            _bl_err "$BL_SERVICES_ADDR:$port is already in use by another process"
            return 1
        fi
        if ! "$server" --bind "$BL_SERVICES_ADDR" --port "$port" --protected-mode "$(_bl_protected_mode)" \
            --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
            --cluster-port $((port + 1000)) \
            --cluster-node-timeout 2000 \
            --dir "$dir" --appendonly yes --appendfsync everysec --save '' \
            --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
            </dev/null >"$dir/start.log" 2>&1; then
            _bl_err "redis-server (cluster node $port) failed to start"
            _bl_show_log "$dir/start.log"
            _bl_show_log "$dir/redis.log"
            return 1
        fi
        started+=("$port")
    done
    if ((${#started[@]})); then
        _BL_STARTED["$state:cluster"]="${started[*]}"
        _bl_log "started Redis Cluster nodes on ports ${started[*]}"
    else
        _bl_log "reusing the Redis Cluster on ports $first..$((first + 5))"
    fi
    local deadline=$((SECONDS + BL_SERVICE_TIMEOUT))
    for port in "${nodes[@]##*:}"; do
        # PONG, not LOADING: a node restarted from its files answers an error while it loads,
        # and the cluster checks below would take it for a node of no cluster.
        until [[ $(redis-cli -h "$BL_SERVICES_ADDR" -p "$port" ping 2>/dev/null) == PONG ]]; do
            if ((SECONDS > deadline)); then
                _bl_err "Redis Cluster node $port does not answer"
                _bl_show_log "$state/redis-cluster/$port/redis.log"
                return 1
            fi
            sleep 0.1
        done
    done
    # Nodes restarted from their nodes.conf find each other again; new ones are introduced.
    if ! redis-cli -h "$BL_SERVICES_ADDR" -p "$first" cluster info 2>/dev/null | grep -q '^cluster_known_nodes:6'; then
        _bl_log "forming the Redis Cluster (3 masters, 1 replica each)"
        if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
            >"$state/redis-cluster/create.log" 2>&1; then
            _bl_err "redis-cli --cluster create failed"
            _bl_show_log "$state/redis-cluster/create.log"
            return 1
        fi
    fi
    until _bl_cluster_ok "$first" "${nodes[@]##*:}"; do
        if ((SECONDS > deadline)); then
            _bl_err "the Redis Cluster did not reach cluster_state:ok with 3 masters"
            redis-cli -h "$BL_SERVICES_ADDR" -p "$first" cluster nodes >&2 || true
            return 1
        fi
        sleep 0.2
    done
    local IFS=,
    export BOLTLINK_TEST_REDIS_CLUSTER_URL="${urls[*]}"
}

# The CC0 country database of ip-location-db (the npm package
# @ip-location-db/geo-whois-asn-country-mmdb, ~8 MB), fetched once with `npm pack` into
# target/geoip/ for the tests that check GeoIP against a real database (BOLTLINK_TEST_GEOIP_DB
# names it for them). Pinned, so a test run does not change with the day's data. Installs
# npm from Debian's packages when missing.
readonly BL_GEOIP_PACKAGE=@ip-location-db/geo-whois-asn-country-mmdb@2.3.2026061719
bl_fetch_geoip_db() {
    local dir=$1 db=$1/geo-whois-asn-country.mmdb
    [[ -s $db ]] && return 0
    if ! command -v npm >/dev/null 2>&1; then
        _bl_log "installing npm (to fetch the test GeoIP database)"
        _bl_apt install --no-install-recommends npm || return 1
    fi
    mkdir -p "$dir"
    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/bl-geoip.XXXXXX")
    _bl_log "fetching $BL_GEOIP_PACKAGE"
    if ! (cd "$tmp" && npm pack --silent "$BL_GEOIP_PACKAGE" >/dev/null && tar xzf ./*.tgz); then
        rm -rf "$tmp"
        _bl_err "could not fetch $BL_GEOIP_PACKAGE with npm pack"
        return 1
    fi
    mv "$tmp/package/geo-whois-asn-country.mmdb" "$db.part" && mv "$db.part" "$db"
    rm -rf "$tmp"
}
