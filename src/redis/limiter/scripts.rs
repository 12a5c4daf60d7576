//! The Lua scripts the limiters run in Redis. Redis runs a script as one unit, so each is one
//! atomic check-and-count across every instance.

/// Sliding-window check-and-count in one atomic step. `KEYS[1]`/`KEYS[2]`: the current and
/// previous window's counters. `ARGV`: limit, window ms, elapsed ms of the current window,
/// `pending` (added unconditionally first: increments already allowed locally), `want` (1:
/// count this request if the estimate is below the limit; 0: only look). Returns
/// `{allowed, current, previous}`. The comparison is the integer form of
/// `⌊prev × (w − e) / w⌋ + cur < limit`, exact in Lua's doubles for any count we keep.
pub const WINDOW_SCRIPT: &str = r#"
local limit = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local e = tonumber(ARGV[3])
local pending = tonumber(ARGV[4])
local cur
if pending > 0 then
  cur = redis.call('INCRBY', KEYS[1], pending)
  redis.call('PEXPIRE', KEYS[1], w * 2)
else
  cur = tonumber(redis.call('GET', KEYS[1]) or '0')
end
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[5]) > 0 and cur < limit and prev * (w - e) < (limit - cur) * w then
  cur = redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], w * 2)
  return {1, cur, prev}
end
return {0, cur, prev}
"#;

/// Several sliding windows checked together and counted all or none, in one atomic step:
/// the shared limiter's check for a request that several limits cover (an API key's per-minute
/// and per-hour limits, plus the route's per-address limit). `KEYS`: per limit `i`, its
/// current and previous window's counters (`KEYS[2i-1]`, `KEYS[2i]`). `ARGV`: per limit `i`,
/// its limit, window ms and elapsed ms of the current window (`ARGV[3i-2..3i]`). Returns
/// `{1, current₁, previous₁, current₂, previous₂, ...}` (every limit allowed and counted,
/// `current` this request included) or `{0, i, current, previous}` (limit `i`, the first
/// that refuses; nothing counted). Each comparison is [`WINDOW_SCRIPT`]'s.
pub(super) const WINDOWS_SCRIPT: &str = r#"
local n = #KEYS / 2
local out = {1}
for i = 1, n do
  local limit = tonumber(ARGV[3 * i - 2])
  local w = tonumber(ARGV[3 * i - 1])
  local e = tonumber(ARGV[3 * i])
  local cur = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if cur >= limit or prev * (w - e) >= (limit - cur) * w then
    return {0, i, cur, prev}
  end
  out[2 * i + 1] = prev
end
for i = 1, n do
  out[2 * i] = redis.call('INCR', KEYS[2 * i - 1])
  redis.call('PEXPIRE', KEYS[2 * i - 1], tonumber(ARGV[3 * i - 1]) * 2)
end
return out
"#;

/// Takes an attempt slot for every subject at once, or none. `KEYS[1]`: the in-flight lock
/// (one attempt at a time), then a (current, previous) counter pair per subject. `ARGV`: lock
/// token, lock lifetime ms, window ms, elapsed ms, then each subject's limit. Returns
/// `{1}` taken, `{-1}` another attempt is in flight, `{0, i, current, previous}` subject `i`
/// is at its limit.
pub(super) const ATTEMPT_SCRIPT: &str = r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {-1} end
local w = tonumber(ARGV[3])
local e = tonumber(ARGV[4])
local n = (#KEYS - 1) / 2
for i = 1, n do
  local cur = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2 * i + 1]) or '0')
  local limit = tonumber(ARGV[4 + i])
  if cur >= limit or prev * (w - e) >= (limit - cur) * w then
    redis.call('DEL', KEYS[1])
    return {0, i, cur, prev}
  end
end
for i = 1, n do
  redis.call('INCR', KEYS[2 * i])
  redis.call('PEXPIRE', KEYS[2 * i], w * 2)
end
return {1}
"#;

/// Ends an attempt: frees the lock if it is still ours (`KEYS[1]`, `ARGV[1]` the token) and
/// gives back one count on each further key (a right password is not a failure).
pub(super) const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
for i = 2, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 1
"#;
