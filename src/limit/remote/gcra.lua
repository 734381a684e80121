-- GCRA: the state is the theoretical arrival time (TAT). A = T (ns), B = tau (ns).
local function step(st)
  local bs, bn = now_s, now_ns
  if st[1] == 1 and later(st[2], st[3], now_s, now_ns) then bs, bn = st[2], st[3] end
  local d = (bs - now_s) * E9 + (bn - now_ns)
  local inc = A * cost
  if d + inc <= B then
    local s, n = add(bs, bn, inc)
    return true, 1, s, n, 0, 0
  end
  return false, 0, 0, 0, 0, d
end
