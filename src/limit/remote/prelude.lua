-- Shared head of every check script: the time, the key's state and time arithmetic.
-- Lua numbers are doubles (integers exact below 2^53): a time is kept as two numbers,
-- (seconds, nanoseconds), and window numbers count whole microseconds, so every value
-- stays exact. KEYS[1] is the key; ARGV: [1] injected now in microseconds ('' = TIME,
-- the only form the library sends outside tests), [2] cost, [3] TTL in ms, [4] block in
-- ns, [5] and [6] the algorithm's parameters.
if redis.replicate_commands then pcall(redis.replicate_commands) end
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
local ttl = tonumber(ARGV[3])
local block = tonumber(ARGV[4])
local A = tonumber(ARGV[5])
local B = tonumber(ARGV[6])

-- The stored state: "tag x y z" (1 time s ns, 2 window idx count, 3 pair idx cur prev,
-- 4 blocked until s ns); absent is a fresh key.
local seen = {0, 0, 0, 0}
local raw = redis.call('GET', KEYS[1])
if raw then
  local i = 1
  for f in string.gmatch(raw, '%S+') do
    seen[i] = tonumber(f)
    i = i + 1
  end
end

local function fmt(x) return string.format('%.0f', x) end

local function later(s1, n1, s2, n2)
  return s1 > s2 or (s1 == s2 and n1 > n2)
end

-- (s1, n1) - (s2, n2) in ns; exact while the difference is below 2^53 ns (104 days).
local function diff(s1, n1, s2, n2)
  return (s1 - s2) * E9 + (n1 - n2)
end

-- (s, n) + d ns.
local function add(s, n, d)
  local m = n + d
  local c = math.floor(m / E9)
  local r = m - c * E9
  if r < 0 then c = c - 1; r = r + E9 elseif r >= E9 then c = c + 1; r = r - E9 end
  return s + c, r
end

-- floor(x / p) for integers, corrected for the division's rounding.
local function floordiv(x, p)
  local q = math.floor(x / p)
  if q * p > x then q = q - 1 elseif (q + 1) * p <= x then q = q + 1 end
  return q
end

-- ceil(a * b / p) exactly for a < 2^20, b <= p < 2^52.
local function muldiv_ceil(a, b, p)
  local q, r
  if a * b < 4503599627370496 then
    q = floordiv(a * b, p)
    r = a * b - q * p
  else
    -- Long multiplication over b's bits, keeping the remainder below p.
    local bits, bb = {}, b
    while bb > 0 do
      local bit = bb % 2
      bits[#bits + 1] = bit
      bb = (bb - bit) / 2
    end
    q, r = 0, 0
    for i = #bits, 1, -1 do
      q = q * 2
      r = r * 2
      if bits[i] == 1 then r = r + a end
      while r >= p do r = r - p; q = q + 1 end
    end
  end
  if r > 0 then q = q + 1 end
  return q
end

-- A window pair (sliding window, concurrency) rolled to the window of now:
-- returns the effective window, this window's count, the previous one's and the effective
-- now in microseconds. A stored window ahead of the clock (it stepped back, by at most a
-- quarter of the 2^25 index space) stays in force.
local function roll(st, p)
  local w = floordiv(now_us, p)
  if st[1] ~= 3 or (st[3] == 0 and st[4] == 0) then return w, 0, 0, now_us end
  local idx = st[2]
  if idx == w then return w, st[3], st[4], now_us end
  if idx > w and idx - w <= 8388608 then
    local start = idx * p
    if start < now_us then start = now_us end
    return idx, st[3], st[4], start
  end
  if idx == w - 1 then return w, 0, st[3], now_us end
  return w, 0, 0, now_us
end
