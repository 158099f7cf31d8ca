#!lua
-- An alternative quota script, measured and not adopted (bench/RESULTS.md, "Sixth pass").
-- Run it beside the real one: python3 bench/redis_script.py policy/store.c THIS_FILE
--
-- layout: string-windows
-- Every value is read by one MGET and each counter is written by one call (3 calls an
-- admission instead of 8): a minute window is a string of the admission times in the last 60 s
-- (13 decimal digits each, oldest first; found by binary search, rewritten whole with SET PX),
-- and a day count is a string under a key ending in the local day id (SET PX on the day's
-- first admission, INCR after).
-- KEYS[1] suspension flag, KEYS[2] last use, KEYS[2+i] counter i (a day counter's key
-- without the day id, which the script adds). ARGV[1] now (ms) or 0 for Redis TIME,
-- ARGV[2..5] local day starts, ARGV[6..8] day ids, ARGV[9] n, then per counter: kind
-- ("m"/"d") and limit. Returns what policy/store.c's script returns.
local now
if ARGV[1] == '0' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else now = tonumber(ARGV[1]) end
local d
for i = 0, 2 do
  if now >= tonumber(ARGV[2 + i]) and now < tonumber(ARGV[3 + i]) then d = i end
end
local n = tonumber(ARGV[9])
local keys = {KEYS[1], KEYS[2]}
if d then
  for i = 1, n do
    if ARGV[8 + 2 * i] == 'm' then keys[2 + i] = KEYS[2 + i]
    else keys[2 + i] = KEYS[2 + i] .. ARGV[6 + d] end
  end
end
local g = redis.call('MGET', unpack(keys))
if g[1] then return {1, now, g[1]} end
if not d then return {3, now} end
local sub, floor, W = string.sub, math.floor, 13
local function at(s, j) return tonumber(sub(s, j * W - W + 1, j * W)) end
local dayend = tonumber(ARGV[3 + d])
local out = {0, now, tonumber(ARGV[6 + d])}
local over, live = false, {}
for i = 1, n do
  local kind, limit, v = ARGV[8 + 2 * i], tonumber(ARGV[9 + 2 * i]), g[2 + i]
  local used, reset
  if kind == 'm' then
    local s = v or ''
    local lo, hi = 1, floor(#s / W) + 1
    while lo < hi do
      local mid = floor((lo + hi) / 2)
      if at(s, mid) > now - 60000 then hi = mid else lo = mid + 1 end
    end
    s = sub(s, lo * W - W + 1)
    live[i] = s
    used = floor(#s / W)
    reset = 60000
    if used > 0 then
      local j = 1
      if used >= limit then j = used - limit + 1 end
      reset = at(s, j) + 60000 - now
    end
  else
    used = tonumber(v) or 0
    reset = dayend - now
  end
  local o = 0
  if used >= limit then o = 1; over = true end
  out[#out + 1] = used; out[#out + 1] = reset; out[#out + 1] = o
end
if over then out[1] = 2; return out end
local nows = string.format('%013d', now)
for i = 1, n do
  local key = keys[2 + i]
  if ARGV[8 + 2 * i] == 'm' then
    local s = live[i]
    local c = floor(#s / W)
    if c == 0 or at(s, c) <= now then s = s .. nows
    else
      local lo, hi = 1, c + 1
      while lo < hi do
        local mid = floor((lo + hi) / 2)
        if at(s, mid) > now then hi = mid else lo = mid + 1 end
      end
      s = sub(s, 1, lo * W - W) .. nows .. sub(s, lo * W - W + 1)
    end
    redis.call('SET', key, s, 'PX', '61000')
  elseif g[2 + i] then
    redis.call('INCR', key)
  else
    redis.call('SET', key, '1', 'PX', string.format('%d', dayend - now + 3600000))
  end
  out[1 + i * 3] = out[1 + i * 3] + 1
end
local last = tonumber(g[2])
if not last or now - last >= 60000 or last > now then
  redis.call('SET', KEYS[2], string.format('%d', now), 'PX', '34560000000')
end
return out
