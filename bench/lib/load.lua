-- wrk script for bench/performance: every request is built here, the same way for BoltLink and
-- for the ceiling server, so both pay the same load-generator cost.
--
--   wrk -tTHREADS ... -s bench/lib/load.lua URL -- MODE FILE EXPECTED_STATUS THREADS [API_KEY [AGENT]]
--
-- MODE
--   pool    GET /<code>, a random code from FILE for every request (uniform)
--   zipf    GET /<code>, codes drawn with Zipf probability (s = 1.1) over FILE's lines in
--           order: line k is requested with probability k^-1.1 / H (H = sum over all lines).
--           The cumulative table is built once per thread; each request is one binary search
--   once    GET /<code>, walking FILE so that no code is requested twice (each thread takes
--           its own slice); "wraps" counts requests made after a slice ran out
--   create  POST /api/shorten with a new URL for every request (FILE unused, API_KEY needed)
-- AGENT (default browser)
--   browser a current desktop Chrome User-Agent: woothee's category "pc", none of
--           src/clicks/enrich.rs's bot markers, so every redirect is a counted click
--   bot     Googlebot's User-Agent (woothee "crawler"): the click is stored, not counted
-- Every request carries a random client address in X-Forwarded-For (the server trusts one
-- proxy hop), so the per-address rate limiter sees many clients, as in production, and the
-- User-Agent of AGENT (without one the API classifies the client as a bot, and its clicks
-- are stored but not counted). The ceiling server ignores both headers but gets them, so it
-- and BoltLink pay the same generator cost.
--
-- done() prints one line starting with RESULT: counts by status class, socket errors, and
-- latency percentiles in microseconds.

local threads = {}
local counter = 0

local agents = {
  browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " ..
    "Chrome/142.0.0.0 Safari/537.36",
  bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
}
local zipf_s = 1.1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  mode = args[1]
  if mode ~= "pool" and mode ~= "once" and mode ~= "zipf" and mode ~= "create" then
    error("MODE must be pool, once, zipf or create, not " .. tostring(mode))
  end
  expected = tonumber(args[3])
  nthreads = tonumber(args[4])
  api_key = args[5]
  agent = agents[args[6] or "browser"]
  if agent == nil then
    error("AGENT must be browser or bot, not " .. args[6])
  end
  codes = {}
  if mode ~= "create" then
    for line in io.lines(args[2]) do
      codes[#codes + 1] = line
    end
    if #codes == 0 then
      error("no codes in " .. args[2])
    end
  end
  -- Threads are created one after another: a different seed per thread.
  math.randomseed(os.time() * 1000 + id * 7919)
  good, s2, s3, s4, s5, wraps, seq = 0, 0, 0, 0, 0, 0, 0
  -- "once": this thread's slice of the file.
  local per = math.floor(#codes / nthreads)
  slice_from = id * per + 1
  slice_to = slice_from + per - 1
  next_index = slice_from
  -- "zipf": cdf[k] = P(rank <= k); the last entry is exactly 1 so every draw finds a rank.
  if mode == "zipf" then
    cdf = {}
    local sum = 0
    for k = 1, #codes do
      sum = sum + k ^ -zipf_s
      cdf[k] = sum
    end
    for k = 1, #codes do
      cdf[k] = cdf[k] / sum
    end
    cdf[#codes] = 1
  end
end

-- The smallest rank k with cdf[k] >= u, for u uniform in [0, 1).
local function zipf_rank()
  local u = math.random()
  local lo, hi = 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

local function client()
  return string.format("%d.%d.%d.%d", math.random(1, 223), math.random(0, 255),
    math.random(0, 255), math.random(1, 254))
end

function request()
  local headers = { ["X-Forwarded-For"] = client(), ["User-Agent"] = agent }
  if mode == "create" then
    seq = seq + 1
    headers["Content-Type"] = "application/json"
    headers["X-API-Key"] = api_key
    local body = string.format('{"url":"https://example.com/bench/%d/%d/%d"}', id, seq,
      math.random(1, 1000000000))
    return wrk.format("POST", "/api/shorten", headers, body)
  end
  local code
  if mode == "once" then
    if next_index > slice_to then
      next_index = slice_from
      wraps = wraps + 1
    end
    code = codes[next_index]
    next_index = next_index + 1
  elseif mode == "zipf" then
    code = codes[zipf_rank()]
  else
    code = codes[math.random(1, #codes)]
  end
  return wrk.format("GET", "/" .. code, headers)
end

function response(status, headers, body)
  if status == expected then good = good + 1 end
  if status < 300 then s2 = s2 + 1
  elseif status < 400 then s3 = s3 + 1
  elseif status < 500 then s4 = s4 + 1
  else s5 = s5 + 1 end
end

function done(summary, latency, requests)
  local t = { good = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, wraps = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      t[k] = t[k] + (thread:get(k) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d good=%d s2xx=%d s3xx=%d s4xx=%d s5xx=%d " ..
    "connect=%d read=%d write=%d timeout=%d status_errors=%d wraps=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, t.good, t.s2, t.s3, t.s4, t.s5,
    e.connect, e.read, e.write, e.timeout, e.status, t.wraps,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
