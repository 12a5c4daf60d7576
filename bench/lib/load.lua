-- wrk script for bench/performance: every request is built here, the same way for BoltLink and
-- for the ceiling server, so both pay the same load-generator cost.
--
--   wrk -tTHREADS ... -s bench/lib/load.lua URL -- MODE FILE EXPECTED_STATUS THREADS [API_KEY]
--
-- MODE
--   pool    GET /<code>, a random code from FILE for every request
--   once    GET /<code>, walking FILE so that no code is requested twice (each thread takes
--           its own slice); "wraps" counts requests made after a slice ran out
--   create  POST /api/shorten with a new URL for every request (FILE unused, API_KEY needed)
-- Every request carries a random client address in X-Forwarded-For (the server trusts one
-- proxy hop), so the per-address rate limiter sees many clients, as in production.
--
-- done() prints one line starting with RESULT: counts by status class, socket errors, and
-- latency percentiles in microseconds.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  mode = args[1]
  expected = tonumber(args[3])
  nthreads = tonumber(args[4])
  api_key = args[5]
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
end

local function client()
  return string.format("%d.%d.%d.%d", math.random(1, 223), math.random(0, 255),
    math.random(0, 255), math.random(1, 254))
end

function request()
  local headers = { ["X-Forwarded-For"] = client() }
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
