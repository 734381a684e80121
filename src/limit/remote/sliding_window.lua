-- Sliding window: A = window (us), B = limit. The previous window's count weighs by how
-- much of it still overlaps a window ending now, rounded up.
local function step(st)
  local ew, cur, prev, nowe = roll(st, A)
  local elapsed = nowe - ew * A
  if elapsed > A then elapsed = A end
  local estimate = muldiv_ceil(prev, A - elapsed, A) + cur
  if estimate + cost <= B then return true, {3, ew, cur + cost, prev}, 0 end
  local windows = 0
  if cur > 0 then windows = 2 elseif prev > 0 then windows = 1 end
  local reset = 0
  if windows > 0 then reset = ((ew + windows) * A - now_us) * 1000 end
  if reset < 0 then reset = 0 end
  return false, nil, reset
end
