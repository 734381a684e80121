-- Fixed window: A = window (us), B = limit. The state is (window number, count).
local function step(st)
  local w = floordiv(now_us, A)
  local idx, count = w, 0
  if st[1] == 2 and st[3] > 0 then
    -- The current window, or one ahead of a clock that stepped back, stays in force.
    if st[2] == w or (st[2] > w and st[2] - w <= 137438953472) then idx, count = st[2], st[3] end
  end
  if count + cost <= B then return true, 2, idx, count + cost, 0, 0 end
  local reset = ((idx + 1) * A - now_us) * 1000
  if reset < 0 then reset = 0 end
  return false, 0, 0, 0, 0, reset
end
