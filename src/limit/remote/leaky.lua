-- Leaky bucket shaping: the state is when the next request may start without waiting.
-- A = T (ns), B = max_delay (ns).
local function step(st)
  local bs, bn = now_s, now_ns
  if st[1] == 1 and later(st[2], st[3], now_s, now_ns) then bs, bn = st[2], st[3] end
  local delay = (bs - now_s) * E9 + (bn - now_ns)
  if delay <= B then
    local s, n = add(bs, bn, A * cost)
    return true, 1, s, n, 0, 0
  end
  return false, 0, 0, 0, 0, delay
end
