-- Shared head of every check script: the time, the key's state and time arithmetic.
-- Lua numbers are doubles (integers exact below 2^53): a time is kept as two numbers,
-- (seconds, nanoseconds), and window numbers count whole microseconds, so every value
-- stays exact. KEYS[1] is the key; ARGV: [1] injected now in microseconds ('' = TIME,
-- the only form the library sends outside tests), [2] cost, [3] TTL in ms, [4] block in
-- ns, [5] and [6] the algorithm's parameters. Redis >= 5 replicates a script's effects,
-- so reading TIME before writing is allowed.
local E9 = 1000000000
local now_s, now_ns
if ARGV[1] ~= '' then
  local us = tonumber(ARGV[1])
  now_s = math.floor(us / 1000000)
  now_ns = (us - now_s * 1000000) * 1000
else
  local t = redis.call('TIME')
  now_s = tonumber(t[1])
  now_ns = tonumber(t[2]) * 1000
end
local now_us = now_s * 1000000 + now_ns / 1000
local cost = tonumber(ARGV[2])
local block = tonumber(ARGV[4])
local A = tonumber(ARGV[5])
local B = tonumber(ARGV[6])

-- The stored state: "tag x y z" (1 time s ns 0, 2 window idx count 0, 3 pair idx cur
-- prev, 4 blocked until s ns 0); absent is a fresh key.
local seen = {0, 0, 0, 0}
local raw = redis.call('GET', KEYS[1])
if raw then
  local a, b, c, d = string.match(raw, '^(%d+) (%d+) (%d+) (%d+)$')
  if a then seen = {tonumber(a), tonumber(b), tonumber(c), tonumber(d)} end
end

local function later(s1, n1, s2, n2)
  return s1 > s2 or (s1 == s2 and n1 > n2)
end

-- (s, n) + d ns; d below 2^52.
local function add(s, n, d)
  local m = n + d
  local c = math.floor(m / E9)
  local r = m - c * E9
  if r < 0 then c = c - 1; r = r + E9 elseif r >= E9 then c = c + 1; r = r - E9 end
  return s + c, r
end
