-- Compare and set: replaces the stored state only if it is still ARGV[1] ('' = absent).
-- ARGV[2] is the new state ('' deletes the key), ARGV[3] the TTL in ms. Returns 1 if set.
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
end
return 1
