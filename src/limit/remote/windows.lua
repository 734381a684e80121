-- Window numbers (fixed and sliding windows, lease epochs), in whole microseconds.

-- floor(x / p) for integers, corrected for the division's rounding.
local function floordiv(x, p)
  local q = math.floor(x / p)
  if q * p > x then q = q - 1 elseif (q + 1) * p <= x then q = q + 1 end
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
