-- ARGV: now, limit -> how many ended jobs past their result_ttl were deleted
local now = clock(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', R .. 'expire', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local f = fields(id, 'queue', 'status', 'task', 'tenant')
  if f[1] then
    redis.call('HINCRBY', R .. 'counts', f[1] .. '\0' .. f[2], -1)
    for _, idx in ipairs({'i:all', 'i:st:' .. f[2], 'i:tk:' .. f[3], 'i:q:' .. f[1],
                          'i:tn:' .. f[4]}) do
      redis.call('ZREM', R .. idx, id)
    end
  end
  redis.call('DEL', R .. 'j:' .. id, R .. 'h:' .. id)
  redis.call('ZREM', R .. 'expire', id)
end
return #due
