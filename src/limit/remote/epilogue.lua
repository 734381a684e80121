-- Shared tail of every check script: a block in force answers at once; otherwise the
-- algorithm's step decides, an allowed request stores its state, a denial starts the
-- policy's block if it has one. Every write sets the TTL, so idle keys disappear.
-- Reply: {allowed, the state decided on (tag x y z, as stored), now s, now ns}.
local function reply(ok)
  return {ok and 1 or 0, seen[1], seen[2], seen[3], seen[4], now_s, now_ns}
end
local st = seen
if seen[1] == 4 then
  if later(seen[2], seen[3], now_s, now_ns) then return reply(false) end
  st = {0, 0, 0, 0}
end
local ok, new, reset_ns = step(st)
if ok then
  local parts = {}
  for i, v in ipairs(new) do parts[i] = fmt(v) end
  redis.call('SET', KEYS[1], table.concat(parts, ' '), 'PX', ttl)
elseif block > 0 then
  local b = block
  if reset_ns > b then b = reset_ns end
  local s, n = add(now_s, now_ns, b)
  redis.call('SET', KEYS[1], '4 ' .. fmt(s) .. ' ' .. fmt(n), 'PX', ttl)
end
return reply(ok)
