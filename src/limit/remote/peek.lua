-- A key's stored state and the server's time, changing nothing. ARGV[1]: injected now in
-- microseconds ('' = TIME).
local s, us
if ARGV[1] ~= '' then
  local t = tonumber(ARGV[1])
  s = math.floor(t / 1000000)
  us = t - s * 1000000
else
  local t = redis.call('TIME')
  s = tonumber(t[1])
  us = tonumber(t[2])
end
return {redis.call('GET', KEYS[1]) or '', s, us * 1000}
