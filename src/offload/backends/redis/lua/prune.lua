-- ARGV: now, limit, policy ("" or the JSON of RetentionPolicy.as_json) -> how many ended
-- jobs were deleted: those past their result_ttl (buckets due in 'fe'), then, with a policy,
-- those without one past their age by outcome (buckets due in 'ff:<status>'; a task's own
-- age is read from its record), then the oldest ended jobs of a queue beyond the cap (by
-- when they were created: buckets oldest first, 'fb'; the 'counts' hash says which queues
-- are over). A bucket whose records all go is unlinked whole.
local now = clock(ARGV[1])
local limit = tonumber(ARGV[2])
local deleted = 0
-- Records one call reads at most (the count cap reads a bucket whole: the last may pass it).
local budget = 10 * limit
local OUTCOMES = {'succeeded', 'failed', 'cancelled'}
-- Write a bucket's schedules anew from the records it keeps.
local function reschedule(name, left)
  local fe, ff = nil, {}
  for _, it in ipairs(left) do
    local fin, ttl = tonumber(rget(it.r, 'finished_at')), tonumber(rget(it.r, 'result_ttl'))
    if finite(ttl) then
      if not fe or fin + ttl < fe then fe = fin + ttl end
    else
      local s = rget(it.r, 'status')
      if not ff[s] or fin < ff[s] then ff[s] = fin end
    end
  end
  if #left == 0 then redis.call('ZREM', R .. 'fb', name) end
  if fe then redis.call('ZADD', R .. 'fe', fe, name) else redis.call('ZREM', R .. 'fe', name) end
  for _, s in ipairs(OUTCOMES) do
    if ff[s] then redis.call('ZADD', R .. 'ff:' .. s, ff[s], name)
    else redis.call('ZREM', R .. 'ff:' .. s, name) end
  end
end
-- Delete the records of bucket `name` that are due (at most limit in all), read in pieces
-- (HSCAN) only until the limit or the budget is reached; a bucket read in part keeps its
-- schedules: they are no later than what it still holds is due.
local function sweep(name, due)
  local key = R .. 'f:' .. name
  local gone, left, counts, pointers, cursor = {}, {}, {}, {}, '0'
  repeat
    if deleted >= limit or budget <= 0 then break end
    local reply = redis.call('HSCAN', key, cursor, 'COUNT', math.max(limit - deleted, 100))
    cursor = reply[1]
    local flat = reply[2]
    for i = 1, #flat, 2 do
      local it = {id = flat[i], r = cjson.decode(flat[i + 1])}
      budget = budget - 1
      if deleted < limit and due(it) then
        gone[#gone + 1] = it.id
        if not homed(it.id, name) then pointers[#pointers + 1] = it.id end
        local c = rget(it.r, 'queue') .. '\0' .. rget(it.r, 'status')
        counts[c] = (counts[c] or 0) + 1
        deleted = deleted + 1
      else
        left[#left + 1] = it
      end
    end
  until cursor == '0'
  local whole = cursor == '0'
  if #gone == 0 then return end
  if whole and #left == 0 then redis.call('UNLINK', key) else bulk('HDEL', key, gone) end
  bulk('HDEL', R .. 'fp', pointers)
  for c, k in pairs(counts) do redis.call('HINCRBY', R .. 'counts', c, -k) end
  if whole then reschedule(name, left) end
end
-- The buckets a schedule says are due by `upto`, oldest first, swept with `due`.
local function walk(zkey, upto, due)
  if deleted >= limit or budget <= 0 then return end
  local names = redis.call('ZRANGEBYSCORE', R .. zkey, '-inf', upto, 'LIMIT', 0, limit)
  for _, name in ipairs(names) do
    if deleted >= limit or budget <= 0 then return end
    sweep(name, due)
  end
end
-- Jobs that ended before buckets (an older offload kept them in j:<id> and its indexes,
-- scheduled in 'expire' and 'fin:<status>'): deleted as that version did, until none is left.
local legacy = redis.call('EXISTS', R .. 'expire', R .. 'fin:succeeded', R .. 'fin:failed',
  R .. 'fin:cancelled') > 0
local zrem, lcounts, keys = {}, {}, {}
local function drop(id)
  local f = fields(id, 'queue', 'status', 'task', 'tenant')
  local idxs = {'expire'}
  if f[1] then
    local name = f[1] .. '\0' .. f[2]
    lcounts[name] = (lcounts[name] or 0) + 1
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
  for name, n in pairs(lcounts) do redis.call('HINCRBY', R .. 'counts', name, -n) end
  for i = 1, #keys, 1000 do
    local chunk = {unpack(keys, i, math.min(i + 999, #keys))}
    local first = table.remove(chunk, 1)  -- every key here is R .. 'j:' or R .. 'h:' ..
    redis.call('DEL', first, unpack(chunk))
  end
  zrem, lcounts, keys = {}, {}, {}
end
if legacy then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', R .. 'expire', '-inf', now, 'LIMIT', 0, limit)) do
    drop(id)
  end
  flush()
end
walk('fe', now, function(it)
  local ttl = tonumber(rget(it.r, 'result_ttl'))
  return finite(ttl) and tonumber(rget(it.r, 'finished_at')) + ttl <= now
end)
if ARGV[3] == nil or ARGV[3] == '' then return deleted end
local policy = cjson.decode(ARGV[3])
for _, status in ipairs(OUTCOMES) do
  local shortest = policy.shortest[status]
  if legacy and shortest >= 0 and deleted < limit then
    local due = redis.call('ZRANGEBYSCORE', R .. 'fin:' .. status, '-inf', now - shortest,
      'WITHSCORES', 'LIMIT', 0, limit - deleted)
    for i = 1, #due, 2 do
      local id, at, age = due[i], tonumber(due[i + 1]), policy.default[status]
      local own = policy.tasks[redis.call('HGET', R .. 'j:' .. id, 'task') or '']
      if own then age = own[status] end
      if age >= 0 and at + age <= now then drop(id) end
    end
    flush()
  end
  if shortest >= 0 then
    walk('ff:' .. status, now - shortest, function(it)
      if rget(it.r, 'status') ~= status or finite(tonumber(rget(it.r, 'result_ttl'))) then
        return false
      end
      local age = policy.default[status]
      local own = policy.tasks[rget(it.r, 'task')]
      if own then age = own[status] end
      return age >= 0 and tonumber(rget(it.r, 'finished_at')) + age <= now
    end)
  end
end
if policy.cap < 0 or deleted >= limit then return deleted end
local ended = {}
local stored = redis.call('HGETALL', R .. 'counts')
for i = 1, #stored, 2 do
  local queue, status = string.match(stored[i], '^(.*)%z(%a+)$')
  if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
    ended[queue] = (ended[queue] or 0) + tonumber(stored[i + 1])
  end
end
-- Before buckets, a queue's oldest ended jobs were in its index i:q (they are older than
-- any in a bucket): scanned from the oldest, at most 10 x limit entries per queue and call.
local function trim_legacy(queue, over)
  local start = 0
  while over > 0 and deleted < limit and start < 10 * limit do
    local ids = redis.call('ZRANGE', R .. 'i:q:' .. queue, start, start + 199)
    if #ids == 0 then break end
    start = start + #ids
    for _, id in ipairs(ids) do
      if over > 0 and deleted < limit and ENDS[redis.call('HGET', R .. 'j:' .. id, 'status')] then
        drop(id)
        over = over - 1
      end
    end
  end
  flush()
  return over
end
-- A record's created_at and queue, read from its head without decoding it (a queue name
-- JSON escapes is decoded).
local function head(raw)
  local at, q = string.match(raw, '^%["([^"]*)",0,')
  if at then return tonumber(at), USUAL.queue end
  at, q = string.match(raw, '^%["([^"]*)","([^"\\]*)",')
  if at then return tonumber(at), q end
  local rec = cjson.decode(raw)
  return tonumber(rec[1]), rget(rec, 'queue')
end
-- Delete the given records of a bucket (all it holds: unlink it). Its schedules stay: they
-- are no later than what it still holds is due (a later sweep writes them anew).
local function cut(name, picked, all)
  local ids, counts, pointers = {}, {}, {}
  for _, m in ipairs(picked) do
    ids[#ids + 1] = m[2]
    if not homed(m[2], name) then pointers[#pointers + 1] = m[2] end
    local rec = cjson.decode(m[3])
    local c = rget(rec, 'queue') .. '\0' .. rget(rec, 'status')
    counts[c] = (counts[c] or 0) + 1
  end
  deleted = deleted + #ids
  bulk('HDEL', R .. 'fp', pointers)
  for c, k in pairs(counts) do redis.call('HINCRBY', R .. 'counts', c, -k) end
  if #ids < all then
    bulk('HDEL', R .. 'f:' .. name, ids)
    return false
  end
  redis.call('UNLINK', R .. 'f:' .. name)
  reschedule(name, {})
  return true
end
-- The k oldest records of `queue` in bucket `name` ({created_at, id, record}...) and how many
-- records the bucket holds. A bucket read whole is sorted once: the order of what is left
-- is kept in the list fo:<bucket>:<queue> (a minute at most) for the next batches; a job
-- retired into the bucket or a record gone since (pruned by age) discards it.
local function take(queue, name, k)
  local key, fo = R .. 'f:' .. name, R .. 'fo:' .. name .. ':' .. queue
  local ids = redis.call('LRANGE', fo, 0, k - 1)
  if #ids > 0 then
    local raws, picked = redis.call('HMGET', key, unpack(ids)), {}
    for i, id in ipairs(ids) do
      if not raws[i] then picked = nil break end
      picked[i] = {0, id, raws[i]}
    end
    if picked then
      redis.call('LTRIM', fo, #ids, -1)
      return picked, redis.call('HLEN', key)
    end
    redis.call('DEL', fo)
  end
  local flat, mine = redis.call('HGETALL', key), {}
  budget = budget - #flat / 2
  for i = 1, #flat, 2 do
    local at, q = head(flat[i + 1])
    if q == queue then mine[#mine + 1] = {at, flat[i], flat[i + 1]} end
  end
  if k >= #mine then return mine, #flat / 2 end
  table.sort(mine, function(x, y) return x[1] < y[1] or (x[1] == y[1] and x[2] < y[2]) end)
  local rest = {}
  for i = k + 1, #mine do rest[#rest + 1] = mine[i][2] end
  bulk('RPUSH', fo, rest)
  redis.call('PEXPIRE', fo, 60000)
  return {unpack(mine, 1, k)}, #flat / 2
end
-- A queue over the cap: its oldest ended jobs go, buckets read oldest first.
local function trim(queue, over)
  if legacy then over = trim_legacy(queue, over) end
  local start = 0
  while over > 0 and deleted < limit and budget > 0 do
    local names = redis.call('ZRANGE', R .. 'fb', start, start + 9)
    if #names == 0 then return end
    start = start + #names
    for _, name in ipairs(names) do
      local again = true
      while again do  -- at most 1000 at a time (what one unpack takes)
        if over <= 0 or deleted >= limit or budget <= 0 then return end
        local k = math.min(over, limit - deleted, 1000)
        local picked, all = take(queue, name, k)
        over = over - #picked
        again = #picked == k and k < all
        if #picked > 0 and cut(name, picked, all) then
          start = start - 1
          again = false
          redis.call('DEL', R .. 'fo:' .. name .. ':' .. queue)
        end
      end
    end
  end
end
for queue, n in pairs(ended) do
  if n > policy.cap then trim(queue, n - policy.cap) end
end
return deleted
