-- Shared tail of every check script: a block in force answers at once; otherwise the
-- algorithm's step decides, an allowed request stores its state, a denial starts the
-- policy's block if it has one. Every write sets the TTL, so idle keys disappear.
-- Reply: {allowed, the state decided on (tag x y z, as stored), now s, now ns}.
local st = seen
if seen[1] == 4 then
  if later(seen[2], seen[3], now_s, now_ns) then
    return {0, seen[1], seen[2], seen[3], seen[4], now_s, now_ns}
  end
  st = {0, 0, 0, 0}
end
local ok, tag, x, y, z, reset_ns = step(st)
if ok then
  redis.call('SET', KEYS[1], string.format('%d %d %d %d', tag, x, y, z), 'PX', ARGV[3])
elseif block > 0 then
  if reset_ns < block then reset_ns = block end
  local s, n = add(now_s, now_ns, reset_ns)
  redis.call('SET', KEYS[1], string.format('4 %d %d 0', s, n), 'PX', ARGV[3])
end
return {ok and 1 or 0, seen[1], seen[2], seen[3], seen[4], now_s, now_ns}
