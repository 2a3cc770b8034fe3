-- ARGV: now, limit, policy ("" or the JSON of RetentionPolicy.as_json) -> how many ended
-- jobs were deleted: those past their result_ttl ('expire'), then, with a policy, those
-- without one past their age by outcome ('fin:<status>', by when they ended; a task's own
-- age is read from its job), then the oldest ended jobs of a queue beyond the cap (by when
-- they were created, 'i:q:<queue>'; the 'counts' hash says which queues are over).
local now = clock(ARGV[1])
local limit = tonumber(ARGV[2])
local deleted = 0
-- Deletions are gathered and written once per key (flush): far fewer calls than per job.
local zrem, counts, keys = {}, {}, {}
local function drop(id)
  local f = fields(id, 'queue', 'status', 'task', 'tenant')
  local idxs = {'expire'}
  if f[1] then
    local name = f[1] .. '\0' .. f[2]
    counts[name] = (counts[name] or 0) + 1
    idxs = {'expire', 'i:all', 'i:st:' .. f[2], 'i:tk:' .. f[3], 'i:q:' .. f[1],
            'i:tn:' .. f[4], 'fin:' .. f[2]}
  end
  for _, idx in ipairs(idxs) do
    local ids = zrem[idx] or {}
    ids[#ids + 1] = id
    zrem[idx] = ids
  end
  keys[#keys + 1] = R .. 'j:' .. id
  keys[#keys + 1] = R .. 'h:' .. id
  deleted = deleted + 1
end
local function flush()
  for idx, ids in pairs(zrem) do bulk('ZREM', R .. idx, ids) end
  for name, n in pairs(counts) do redis.call('HINCRBY', R .. 'counts', name, -n) end
  for i = 1, #keys, 1000 do
    local chunk = {unpack(keys, i, math.min(i + 999, #keys))}
    local first = table.remove(chunk, 1)  -- every key here is R .. 'j:' or R .. 'h:' ..
    redis.call('DEL', first, unpack(chunk))
  end
  zrem, counts, keys = {}, {}, {}
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', R .. 'expire', '-inf', now, 'LIMIT', 0, limit)) do
  drop(id)
end
if ARGV[3] == nil or ARGV[3] == '' then flush() return deleted end
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
flush()  -- the counts below must not count what was just deleted
if policy.cap < 0 or deleted >= limit then return deleted end
local ended = {}
local stored = redis.call('HGETALL', R .. 'counts')
for i = 1, #stored, 2 do
  local queue, status = string.match(stored[i], '^(.*)%z(%a+)$')
  if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
    ended[queue] = (ended[queue] or 0) + tonumber(stored[i + 1])
  end
end
-- Scanned from the oldest, at most 10 x limit entries per queue and call: a queue whose
-- oldest jobs are long-queued or scheduled ones does not make every prune walk all of them.
for queue, n in pairs(ended) do
  local over, start = n - policy.cap, 0
  while over > 0 and deleted < limit and start < 10 * limit do
    local ids = redis.call('ZRANGE', R .. 'i:q:' .. queue, start, start + 199)
    if #ids == 0 then break end
    start = start + #ids
    for _, id in ipairs(ids) do
      local status = redis.call('HGET', R .. 'j:' .. id, 'status')
      if over > 0 and deleted < limit and (status == 'succeeded' or status == 'failed' or
          status == 'cancelled') then
        drop(id)
        over = over - 1
      end
    end
  end
end
flush()
return deleted
