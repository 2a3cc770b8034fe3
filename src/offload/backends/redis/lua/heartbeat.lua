-- ARGV: now, worker id, ttl, info JSON (without last_seen)
local now = clock(ARGV[1])
local id, ttl = ARGV[2], tonumber(ARGV[3])
local gone = redis.call('ZRANGEBYSCORE', R .. 'wexp', '-inf', now, 'LIMIT', 0, 100)
for _, old in ipairs(gone) do
  redis.call('HDEL', R .. 'w', old)
  redis.call('ZREM', R .. 'wseen', old)
  redis.call('ZREM', R .. 'wexp', old)
end
if ttl <= 0 then
  redis.call('HDEL', R .. 'w', id)
  redis.call('ZREM', R .. 'wseen', id)
  redis.call('ZREM', R .. 'wexp', id)
else
  redis.call('HSET', R .. 'w', id, ARGV[4])
  redis.call('ZADD', R .. 'wseen', now, id)
  redis.call('ZADD', R .. 'wexp', now + ttl, id)
end
return 'ok'
