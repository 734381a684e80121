-- Concurrency leases: A = lease timeout (us), B = maximum in flight. Leases count in this
-- epoch and the previous one; an unreleased lease expires with its epoch.
local function step(st)
  local ew, cur, prev = roll(st, A)
  if cur + prev + cost <= B then return true, 3, ew, cur + cost, prev, 0 end
  local r = 1
  if cur > 0 then r = 2 end
  local reset = ((ew + r) * A - now_us) * 1000
  if reset < 0 then reset = 0 end
  return false, 0, 0, 0, 0, reset
end
