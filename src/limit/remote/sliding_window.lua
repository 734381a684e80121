-- Sliding window: A = window (us), B = limit. The previous window's count weighs by how
-- much of it still overlaps a window ending now, rounded up.

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

local function step(st)
  local ew, cur, prev, nowe = roll(st, A)
  local elapsed = nowe - ew * A
  if elapsed > A then elapsed = A end
  local estimate = muldiv_ceil(prev, A - elapsed, A) + cur
  if estimate + cost <= B then return true, 3, ew, cur + cost, prev, 0 end
  local windows = 0
  if cur > 0 then windows = 2 elseif prev > 0 then windows = 1 end
  local reset = 0
  if windows > 0 then reset = ((ew + windows) * A - now_us) * 1000 end
  if reset < 0 then reset = 0 end
  return false, 0, 0, 0, 0, reset
end
