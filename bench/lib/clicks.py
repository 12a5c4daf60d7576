"""Load generation and measurement for bench/drain.

Subcommands:
  fill     append N click events to a stream, in exactly the layout `ClickEvent::fields`
           writes (v=1, id, link, owner, at, region, ua, ref, lat, kind, ip), with pipelined
           XADDs; prints a JSON summary (counts of bot and non-bot events among them).
  xrange   read a whole stream with XRANGE ... COUNT B and report entries/s (the reference
           for how fast anything can take events out of this Redis).
  monitor  poll both consumer groups until they have finished everything (lag 0 and nothing
           pending) or a deadline passes; account CPU per process meanwhile; print JSON.

Only loopback addresses are used; every loop is bounded in count and in time.
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time

import hiredis
import redis

# Realistic user agents with the share of traffic each gets. The bot ones are flagged by
# enrich.rs (woothee "crawler" or a marker like "bot", "curl/", "python-requests").
USER_AGENTS = [
    # desktop
    (22, False, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"),
    (9, False, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"),
    (6, False, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"),
    (6, False, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0"),
    (5, False, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"),
    (2, False, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36"),
    (1, False, "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0"),
    # mobile and tablet
    (20, False, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"),
    (14, False, "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36"),
    (5, False, "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36"),
    (3, False, "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"),
    (2, False, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 337.0.3.23.54 (iPhone15,3; iOS 17_5; en_US; en; scale=3.00; 1290x2796; 619258302)"),
    # bots and tools: about 5 % of traffic
    (2, True, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    (1, True, "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
    (1, True, "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"),
    (0.5, True, "curl/8.5.0"),
    (0.5, True, "python-requests/2.32.3"),
]

REGIONS = [
    (30, "US"), (9, "DE"), (8, "GB"), (7, "IN"), (6, "FR"), (5, "BR"), (4, "CA"), (4, "JP"),
    (3, "NL"), (3, "ES"), (3, "IT"), (2, "AU"), (2, "PL"), (2, "SE"), (2, "MX"), (1, "KR"),
    (1, "TR"), (1, "ID"), (7, "UNKNOWN"),
]

REFERRERS = [
    (40, ""), (15, "https://www.google.com/"), (10, "https://t.co/Xk3pL9aQ2z"),
    (8, "https://www.facebook.com/"), (6, "https://www.linkedin.com/feed/"),
    (5, "https://news.ycombinator.com/item?id=40543221"), (4, "https://www.reddit.com/r/programming/comments/1d7x2k/"),
    (3, "https://mail.google.com/"), (3, "https://duckduckgo.com/"), (2, "android-app://com.slack"),
    (2, "https://teams.microsoft.com/"), (2, "https://l.instagram.com/?u=https%3A%2F%2Fexample.com"),
]

# Stream field order of ClickEvent::fields.
FIELDS = ("v", "id", "link", "owner", "at", "region", "ua", "ref", "lat", "kind", "ip")


def bulk(s):
    b = s.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def field_value(name, value):
    """RESP of one field name and its value, as a str (all values are ASCII)."""
    return f"${len(name)}\r\n{name}\r\n${len(value)}\r\n{value}\r\n"


def uuid7(ms, rnd):
    """A UUIDv7 string like Uuid::now_v7: 48-bit ms timestamp, version 7, variant 10."""
    r = rnd.getrandbits(74)
    v = (ms << 80) | (0x7 << 76) | ((r >> 62) << 64) | (0b10 << 62) | (r & ((1 << 62) - 1))
    h = f"{v:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def random_ip(rnd):
    if rnd.random() < 0.85:
        # Documentation ranges: these are only strings in events, never contacted.
        net = rnd.choice(("192.0.2", "198.51.100", "203.0.113"))
        return f"{net}.{rnd.randrange(1, 255)}"
    return f"2001:db8:{rnd.randrange(0, 0xffff):x}::{rnd.randrange(1, 0xffff):x}"


class Resp:
    """A pipelining RESP connection: write many commands, then read that many replies."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()

    def send(self, payload):
        self.sock.sendall(payload)

    def replies(self, n):
        out = []
        while len(out) < n:
            reply = self.reader.gets()
            if reply is False:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("redis closed the connection")
                self.reader.feed(data)
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise RuntimeError(f"redis error: {reply}")
            out.append(reply)
        return out

    def command(self, *args):
        self.send(b"*%d\r\n" % len(args) + b"".join(bulk(str(a)) for a in args))
        return self.replies(1)[0]


def weighted(items):
    weights = [w for w, *_ in items]
    total = 0.0
    cum = []
    for w in weights:
        total += w
        cum.append(total)
    return cum


def fill(args):
    rnd = random.Random(args.seed)
    with open(args.links) as f:
        links = [line.strip() for line in f if line.strip()]
    if not links:
        sys.exit("fill: no link ids")
    # Zipf-like popularity: a few links get most clicks, as with real short links.
    link_cum = []
    total = 0.0
    for rank in range(1, len(links) + 1):
        total += 1.0 / rank**1.1
        link_cum.append(total)
    ua_cum = weighted(USER_AGENTS)
    region_cum = weighted(REGIONS)
    ref_cum = weighted(REFERRERS)
    ua_parts = [field_value("ua", ua) for _, _, ua in USER_AGENTS]
    ua_bot = [bot for _, bot, _ in USER_AGENTS]
    region_parts = [field_value("region", r) for _, r in REGIONS]
    ref_parts = [field_value("ref", r) for _, r in REFERRERS]
    head = f"*25\r\n$4\r\nXADD\r\n${len(args.key)}\r\n{args.key}\r\n$1\r\n*\r\n" + field_value("v", "1")
    owner_part = field_value("owner", args.owner)
    kind_part = field_value("kind", "click")

    conn = Resp(args.host, args.port, timeout=60)
    deadline = time.monotonic() + args.timeout
    n = args.events
    # Clicks spread evenly over the hour before now, in order, like a backlog that built up.
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 3_600_000
    step = 3_600_000 / n
    bots = 0
    t0 = time.monotonic()
    done = 0
    while done < n:
        if time.monotonic() > deadline:
            sys.exit(f"fill: deadline of {args.timeout}s passed after {done} events")
        b = min(args.batch, n - done)
        link_pick = rnd.choices(range(len(links)), cum_weights=link_cum, k=b)
        ua_pick = rnd.choices(range(len(USER_AGENTS)), cum_weights=ua_cum, k=b)
        region_pick = rnd.choices(range(len(REGIONS)), cum_weights=region_cum, k=b)
        ref_pick = rnd.choices(range(len(REFERRERS)), cum_weights=ref_cum, k=b)
        parts = []
        for j in range(b):
            i = done + j
            at = start_ms + int(i * step)
            ua = ua_pick[j]
            bots += ua_bot[ua]
            lat = str(rnd.randrange(150, 4000))
            ip = random_ip(rnd)
            parts.append(
                head
                + field_value("id", uuid7(at, rnd))
                + field_value("link", links[link_pick[j]])
                + owner_part
                + field_value("at", str(at))
                + region_parts[region_pick[j]]
                + ua_parts[ua]
                + ref_parts[ref_pick[j]]
                + field_value("lat", lat)
                + kind_part
                + field_value("ip", ip)
            )
        conn.send("".join(parts).encode())
        conn.replies(b)
        done += b
    elapsed = time.monotonic() - t0
    xlen = conn.command("XLEN", args.key)
    json.dump(
        {
            "events": n,
            "bots": bots,
            "non_bots": n - bots,
            "seconds": round(elapsed, 3),
            "xadd_per_s": round(n / elapsed),
            "xlen": xlen,
        },
        sys.stdout,
    )
    print()


def xrange(args):
    conn = Resp(args.host, args.port, timeout=60)
    deadline = time.monotonic() + args.timeout
    start = "-"
    total = 0
    redis_cpu0 = proc_cpu(args.redis_pid) if args.redis_pid else None
    t0 = time.monotonic()
    while True:
        if time.monotonic() > deadline:
            sys.exit(f"xrange: deadline of {args.timeout}s passed after {total} entries")
        reply = conn.command("XRANGE", args.key, start, "+", "COUNT", args.batch)
        if not reply:
            break
        total += len(reply)
        start = "(" + reply[-1][0].decode()
        if len(reply) < args.batch:
            break
    elapsed = time.monotonic() - t0
    result = {"entries": total, "seconds": round(elapsed, 3), "per_s": round(total / elapsed)}
    if redis_cpu0 is not None:
        # What serving the reads cost the Redis process itself: its ceiling on one core.
        cpu = proc_cpu(args.redis_pid) - redis_cpu0
        result["redis_cpu_seconds"] = round(cpu, 3)
        result["redis_per_cpu_s"] = round(total / cpu) if cpu > 0 else None
    json.dump(result, sys.stdout)
    print()


# ---- monitor ---------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime + stime of a process in seconds, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children_of(ppid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == ppid:
            out.append(int(name))
    return out


def machine_cpu():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / TICK, total / TICK


class CpuAccount:
    """CPU seconds used by named process groups between start() and stop()."""

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning pids
        self.base = {}

    def snapshot(self):
        snap = {}
        for name, pids in self.groups.items():
            for pid in pids():
                cpu = proc_cpu(pid)
                if cpu is not None:
                    snap[(name, pid)] = cpu
        return snap

    def start(self):
        self.base = self.snapshot()
        self.machine0 = machine_cpu()

    def stop(self):
        end = self.snapshot()
        used = {name: 0.0 for name in self.groups}
        for (name, pid), cpu in end.items():
            used[name] += cpu - self.base.get((name, pid), 0.0)
        busy1, total1 = machine_cpu()
        busy = busy1 - self.machine0[0]
        wall_cpus = (total1 - self.machine0[1])
        ours = sum(used.values())
        used["everything else on the machine"] = max(0.0, busy - ours)
        used["idle"] = max(0.0, wall_cpus - busy)
        return {k: round(v, 2) for k, v in used.items()}


def monitor(args):
    r = redis.Redis(host=args.host, port=args.port, socket_timeout=10, decode_responses=True)
    pg = int(args.pg_pid)
    groups = {
        "boltlink-worker": lambda: [args.worker_pid],
        "boltlink-aggregator": lambda: [args.aggregator_pid],
        "postgres (this cluster)": lambda: [pg] + children_of(pg),
        "redis-server": lambda: [args.redis_pid],
        "this monitor (polls XINFO 20x/s)": lambda: [os.getpid()],
    }
    cpu = CpuAccount(groups)
    names = args.groups.split(",")
    t0 = args.t0  # when the consumers were started (time.time())
    cpu.start()
    deadline = time.monotonic() + args.timeout
    done_at = {}
    delivered_at = None
    timeline = []
    last_line = 0.0
    top_taken = False
    status = {}
    while True:
        now = time.time()
        info = {g["name"]: g for g in r.xinfo_groups(args.key)}
        status = {}
        for g in names:
            gi = info.get(g)
            if gi is None:
                status[g] = {"lag": None, "pending": None}
                continue
            lag = gi.get("lag")
            if lag is None:
                # Redis could not compute it (never expected here): count what is undelivered.
                last = gi["last-delivered-id"]
                lag = len(r.xrange(args.key, "(" + last, "+", count=args.events + 1))
            status[g] = {"lag": lag, "pending": gi["pending"]}
            if g not in done_at and lag == 0 and gi["pending"] == 0 and now - t0 > 0.05:
                done_at[g] = now - t0
        if delivered_at is None and all(s["lag"] == 0 for s in status.values()):
            delivered_at = now - t0
        if now - last_line >= 1.0:
            last_line = now
            timeline.append({"t": round(now - t0, 1), **{g: (s["lag"] or 0) + (s["pending"] or 0) for g, s in status.items()}})
            left = ", ".join(f"{g}: {(s['lag'] or 0) + (s['pending'] or 0)} left" for g, s in status.items())
            print(f"  t={now - t0:6.1f}s  {left}", file=sys.stderr, flush=True)
        if not top_taken and now - t0 > args.top_after:
            # One `top` sample mid-drain, kept in the log for a human to look at.
            top_taken = True
            try:
                out = subprocess.run(["top", "-b", "-n1", "-w", "200"], capture_output=True, text=True, timeout=10).stdout
                with open(args.top_file, "w") as f:
                    f.write(out)
            except (OSError, subprocess.SubprocessError):
                pass
        if len(done_at) == len(names):
            break
        if time.monotonic() > deadline:
            break
        for pid in (args.worker_pid, args.aggregator_pid):
            if proc_cpu(pid) is None:
                print(f"monitor: process {pid} exited during the drain", file=sys.stderr)
                deadline = 0
        time.sleep(0.05)
    elapsed = time.time() - t0
    used = cpu.stop()
    json.dump(
        {
            "finished": len(done_at) == len(names),
            "elapsed": round(elapsed, 3),
            "done_at": {g: round(s, 3) for g, s in done_at.items()},
            "lag_zero_at": None if delivered_at is None else round(delivered_at, 3),
            "left": {g: (s["lag"] or 0) + (s["pending"] or 0) for g, s in status.items()},
            "cpu_seconds": used,
            "timeline": timeline,
        },
        sys.stdout,
    )
    print()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True, help="the stream")
    p.add_argument("--timeout", type=float, default=600, help="seconds before giving up")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    f.add_argument("--events", type=int, required=True)
    f.add_argument("--links", required=True, help="file with one link id per line")
    f.add_argument("--owner", required=True)
    f.add_argument("--batch", type=int, default=5000)
    f.add_argument("--seed", type=int, default=1)
    x = sub.add_parser("xrange")
    x.add_argument("--batch", type=int, default=5000)
    x.add_argument("--redis-pid", type=int, help="account the Redis server's CPU time")
    m = sub.add_parser("monitor")
    m.add_argument("--events", type=int, required=True)
    m.add_argument("--groups", default="worker,aggregator")
    m.add_argument("--t0", type=float, required=True)
    m.add_argument("--worker-pid", type=int, required=True)
    m.add_argument("--aggregator-pid", type=int, required=True)
    m.add_argument("--pg-pid", type=int, required=True)
    m.add_argument("--redis-pid", type=int, required=True)
    m.add_argument("--top-after", type=float, default=3.0)
    m.add_argument("--top-file", required=True)
    args = p.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("only loopback addresses are allowed")
    {"fill": fill, "xrange": xrange, "monitor": monitor}[args.cmd](args)


if __name__ == "__main__":
    main()
