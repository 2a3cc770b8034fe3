-- ARGV: now, limit, policy ("" or the JSON of RetentionPolicy.as_json) -> how many ended
-- jobs were deleted: those past their result_ttl ('expire'), then, with a policy, those
-- without one past their age by outcome ('fin:<status>', by when they ended; a task's own
-- age is read from its job), then the oldest ended jobs of a queue beyond the cap (by when
-- they were created, 'i:q:<queue>'; the 'counts' hash says which queues are over).
local now = clock(ARGV[1])
local limit = tonumber(ARGV[2])
local deleted = 0
local function drop(id)
  local f = fields(id, 'queue', 'status', 'task', 'tenant')
  if f[1] then
    redis.call('HINCRBY', R .. 'counts', f[1] .. '\0' .. f[2], -1)
    for _, idx in ipairs({'i:all', 'i:st:' .. f[2], 'i:tk:' .. f[3], 'i:q:' .. f[1],
                          'i:tn:' .. f[4], 'fin:' .. f[2]}) do
      redis.call('ZREM', R .. idx, id)
    end
  end
  redis.call('DEL', R .. 'j:' .. id, R .. 'h:' .. id)
  redis.call('ZREM', R .. 'expire', id)
  deleted = deleted + 1
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', R .. 'expire', '-inf', now, 'LIMIT', 0, limit)) do
  drop(id)
end
if ARGV[3] == nil or ARGV[3] == '' then return deleted end
local policy = cjson.decode(ARGV[3])
local own = next(policy.tasks) ~= nil
for _, status in ipairs({'succeeded', 'failed', 'cancelled'}) do
  local shortest = policy.shortest[status]
  if shortest >= 0 and deleted < limit then
    local due = redis.call('ZRANGEBYSCORE', R .. 'fin:' .. status, '-inf', now - shortest,
      'WITHSCORES', 'LIMIT', 0, limit - deleted)
    for i = 1, #due, 2 do
      local id, at, age = due[i], tonumber(due[i + 1]), policy.default[status]
      if own then
        local task = policy.tasks[redis.call('HGET', R .. 'j:' .. id, 'task') or '']
        if task then age = task[status] end
      end
      if age >= 0 and at + age <= now then drop(id) end
    end
  end
end
if policy.cap < 0 or deleted >= limit then return deleted end
local ended = {}
local counts = redis.call('HGETALL', R .. 'counts')
for i = 1, #counts, 2 do
  local queue, status = string.match(counts[i], '^(.*)%z(%a+)$')
  if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
    ended[queue] = (ended[queue] or 0) + tonumber(counts[i + 1])
  end
end
for queue, n in pairs(ended) do
  local over, start = n - policy.cap, 0
  while over > 0 and deleted < limit do
    local ids = redis.call('ZRANGE', R .. 'i:q:' .. queue, start, start + 199)
    if #ids == 0 then break end
    start = start + #ids
    for _, id in ipairs(ids) do
      local status = redis.call('HGET', R .. 'j:' .. id, 'status')
      if over > 0 and deleted < limit and (status == 'succeeded' or status == 'failed' or
          status == 'cancelled') then
        drop(id)
        over = over - 1
        start = start - 1
      end
    end
  end
end
return deleted
