# shellcheck shell=bash
#
# What the systemd-nspawn e2e scripts share (scripts/systemd-e2e, scripts/fleet-e2e). Sourced
# after scripts/lib/services.sh (its apt-get helper), with BL_E2E_NAME set: it starts every
# line the script prints.
#
#   log MSG...                a line on stderr
#   fail MSG...               a FAILED line on stderr, then exit 1
#   result MSG...             a figure for the closing summary (array `results`), logged
#   print_results             the summary: every figure of this run
#   wait_for SECS CMD...      runs CMD every 0.2 s until it succeeds; status 1 after SECS
#   ensure_tool CMD PKG       installs PKG with apt-get when CMD is missing
#   bl_e2e_count_lua FILE     writes the wrk script that counts requests sent, 302s and other
#                             answers, and prints them on a line starting "E2E "
#   bl_e2e_load_figures FILE  prints "sent good failed" from that line in wrk's output FILE
#                             (failed: other answers and socket errors)

results=()

log() { printf '%s: %s\n' "$BL_E2E_NAME" "$*" >&2; }
fail() {
    printf '%s: FAILED: %s\n' "$BL_E2E_NAME" "$*" >&2
    exit 1
}
result() {
    results+=("$*")
    log "$*"
}
print_results() {
    local r
    for r in "${results[@]}"; do printf '  - %s\n' "$r" >&2; done
}

wait_for() {
    local secs=$1
    shift
    local deadline=$((SECONDS + secs))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

ensure_tool() {
    local tool=$1 pkg=$2
    command -v "$tool" >/dev/null 2>&1 && return 0
    if [[ ${_BL_APT_UPDATED:-0} != 1 ]]; then
        log "apt-get update"
        _bl_apt update || return 1
        _BL_APT_UPDATED=1
    fi
    log "installing $pkg"
    _bl_apt install --no-install-recommends "$pkg"
}

bl_e2e_count_lua() {
    cat >"$1" <<'LUA'
-- Counts the requests sent and the answers (302 or not); wrk adds socket errors to its
-- summary. A request still in flight when the run ends is sent and not answered.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) good = 0; bad = 0; sent = 0 end
function request() sent = sent + 1; return wrk.format() end
function response(status, headers, body)
  if status == 302 then good = good + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local g, b, s = 0, 0, 0
  for _, t in ipairs(threads) do g = g + t:get("good"); b = b + t:get("bad"); s = s + t:get("sent") end
  local e = summary.errors
  io.write(string.format("E2E sent=%d good=%d bad=%d connect=%d read=%d write=%d timeout=%d\n",
    s, g, b, e.connect, e.read, e.write, e.timeout))
end
LUA
}

bl_e2e_load_figures() {
    local out=$1 line
    line=$(grep '^E2E ' "$out") || {
        cat "$out" >&2
        fail "wrk printed no summary"
    }
    python3 - "$line" <<'PY'
import sys
f = dict(kv.split("=") for kv in sys.argv[1].split()[1:])
failed = int(f["bad"]) + int(f["connect"]) + int(f["read"]) + int(f["write"]) + int(f["timeout"])
print(f["sent"], f["good"], failed)
PY
}
