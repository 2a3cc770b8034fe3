-- The prelude of every script but SUBMIT (offload.backends.redis.scripts puts it before each):
-- base.lua (KEYS[1] as the namespace root R, the clock, number helpers), ALLOWED the state
-- machine generated from offload.core.states.TRANSITIONS, and the helpers the transitions share.
-- Placeholders (a capitalised name between double underscores) take the values of
-- scripts.VALUES at load.
-- include: base.lua
local ALLOWED = __TRANSITIONS__
-- One command over many members (at most 1000 arguments at a time, unpack's stack limit).
local function bulk(cmd, key, items)
  for i = 1, #items, 1000 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 999, #items)))
  end
end
-- Status changes of many jobs at once: what move() does per job, written once per key.
local function changes()
  local c = {counts = {}, out = {}, into = {}}
  function c.add(id, queue, created, from, to)
    c.counts[queue .. '\0' .. from] = (c.counts[queue .. '\0' .. from] or 0) - 1
    c.counts[queue .. '\0' .. to] = (c.counts[queue .. '\0' .. to] or 0) + 1
    local o = c.out[from] or {}
    o[#o + 1] = id
    c.out[from] = o
    local i = c.into[to] or {}
    i[#i + 1] = created
    i[#i + 1] = id
    c.into[to] = i
  end
  function c.flush()
    for name, n in pairs(c.counts) do
      if n ~= 0 then redis.call('HINCRBY', R .. 'counts', name, n) end
    end
    for st, ids in pairs(c.out) do bulk('ZREM', R .. 'i:st:' .. st, ids) end
    for st, pairs_ in pairs(c.into) do bulk('ZADD', R .. 'i:st:' .. st, pairs_) end
    c.counts, c.out, c.into = {}, {}, {}
  end
  return c
end
local function fields(id, ...)
  return redis.call('HMGET', R .. 'j:' .. id, ...)
end
-- A job's history: an h: list while it lives; when it ends, fold() moves the list into the
-- job's hash, one short field per entry (h1, h2, ...: values under hash-max-listpack-value
-- keep the hash a listpack). An entry's time is 1 or 2 when it is the job's started_at or
-- finished_at, its reason 0 when it is the new status, its worker 1 when it is the job's
-- worker_id, and trailing falses are left out (records.history_entries reads them back).
-- The limits only running needs go too, updated_at and run_at when they repeat
-- finished_at and created_at, priority and losses when 0: one key and ~360 bytes less per
-- ended job.
local ENDS = {succeeded = true, failed = true, cancelled = true}
local function fold(id, last)
  local k, hk = R .. 'j:' .. id, R .. 'h:' .. id
  local raw = redis.call('LRANGE', hk, 0, -1)
  local f = redis.call('HMGET', k, 'started_at', 'finished_at', 'worker_id', 'updated_at',
    'run_at', 'created_at', 'priority', 'losses')
  local sets = {}
  local function put(e)
    if e[1] == f[1] then e[1] = 1 elseif e[1] == f[2] then e[1] = 2 end
    if e[4] == e[3] then e[4] = 0 end
    if f[3] and e[7] == f[3] then e[7] = 1 end
    while #e > 0 and e[#e] == false do e[#e] = nil end
    sets[#sets + 1] = 'h' .. (#sets / 2 + 1)
    sets[#sets + 1] = cjson.encode(e)
  end
  for _, r in ipairs(raw) do put(cjson.decode(r)) end
  put(last)
  bulk('HSET', k, sets)  -- in pieces: a long history (many rate_limited turns) exceeds unpack
  local dels = {'lease_until', 'cap', 'key_cap', 'rate', 'key_rate'}
  if f[4] == f[2] then dels[#dels + 1] = 'updated_at' end  -- read back as finished_at
  if f[5] == f[6] then dels[#dels + 1] = 'run_at' end  -- read back as created_at
  if f[7] == '0' then dels[#dels + 1] = 'priority' end  -- read back as 0
  if f[8] == '0' then dels[#dels + 1] = 'losses' end
  redis.call('HDEL', k, unpack(dels))
  redis.call('DEL', hk)
end
local function hist(id, at, from, to, reason, attempt, token, worker, detail)
  local entry = {fnum(at), from or false, to, reason, tonumber(attempt), tonumber(token),
    worker or false, detail or false}
  if ENDS[to] then return fold(id, entry) end
  redis.call('RPUSH', R .. 'h:' .. id, cjson.encode(entry))
end
-- Count, index and record a status change (from = nil for a new job).
local function move(id, queue, created, from, to)
  if not ALLOWED[from or 'new'][to] then
    return redis.error_reply('offload: transition ' .. (from or 'new') .. ' -> ' .. to ..
      ' of job ' .. id .. ' is not allowed')
  end
  if from then
    redis.call('HINCRBY', R .. 'counts', queue .. '\0' .. from, -1)
    redis.call('ZREM', R .. 'i:st:' .. from, id)
  end
  redis.call('HINCRBY', R .. 'counts', queue .. '\0' .. to, 1)
  redis.call('ZADD', R .. 'i:st:' .. to, created, id)
  redis.call('HSET', R .. 'j:' .. id, 'status', to)
end
-- Make a job claimable: innocents by priority (jobs of limited tasks apart), suspects apart.
-- Wake idle workers when the partition had nothing ready before.
local function limited(id)
  local f = fields(id, 'cap', 'key_cap', 'rate', 'key_rate')
  return f[1] or f[2] or f[3] or f[4]
end
local function enqueue(id, queue, prio, run_at, losses)
  if tonumber(losses) > 0 then
    redis.call('ZADD', R .. 's:' .. queue, run_at, id)
    return
  end
  local part, parts = 'q:', 'qp:'
  if limited(id) then part, parts = 'c:', 'cp:' end
  local qp = R .. parts .. queue
  local was_empty = redis.call('EXISTS', qp) == 0
  redis.call('ZADD', R .. part .. queue .. ':' .. prio, run_at, id)
  redis.call('ZADD', qp, -tonumber(prio), prio)
  if was_empty then redis.call('PUBLISH', R .. 'wake', queue) end
end
-- The slots a capped job holds while it runs (see offload.backends._gate).
local function slots_for(task, key, cap, key_cap)
  local out = {}
  if cap then out[#out + 1] = {'t\0' .. task, tonumber(cap)} end
  if key_cap and key then out[#out + 1] = {'k\0' .. task .. '\0' .. key, tonumber(key_cap)} end
  return out
end
local function slots_of(id)
  return slots_for(unpack(fields(id, 'task', 'concurrency_key', 'cap', 'key_cap')))
end
local function dequeue(id, queue, prio)
  for _, p in ipairs({{'q:', 'qp:'}, {'c:', 'cp:'}}) do
    local qk = R .. p[1] .. queue .. ':' .. prio
    if redis.call('ZREM', qk, id) == 1 then
      if redis.call('EXISTS', qk) == 0 then redis.call('ZREM', R .. p[2] .. queue, prio) end
      return
    end
  end
  if redis.call('ZREM', R .. 's:' .. queue, id) == 1 then return end
  for _, slot in ipairs(slots_of(id)) do redis.call('ZREM', R .. 'park:' .. slot[1], id) end
end
-- Make up to n jobs parked on a full slot claimable again (the slot has room now).
local function unpark(slot, n)
  local k = R .. 'park:' .. slot
  local ids = redis.call('ZRANGE', k, 0, n - 1, 'WITHSCORES')
  for j = 1, #ids, 2 do
    redis.call('ZREM', k, ids[j])
    local f = fields(ids[j], 'status', 'queue', 'priority', 'losses')
    if f[1] == 'queued' then enqueue(ids[j], f[2], f[3], tonumber(ids[j + 1]), f[4] or 0) end
  end
end
-- Give back the slots a job held; true if it held any (workers may wait for one).
local function release_slots(held)
  for _, slot in ipairs(held) do
    redis.call('HINCRBY', R .. 'slots', slot[1], -1)
    unpark(slot[1], 1)
  end
  return #held > 0
end
-- A job leaves running: give back its slots, and wake workers that may wait for one.
local function free_slots(id, queue)
  if release_slots(slots_of(id)) then redis.call('PUBLISH', R .. 'wake', queue) end
end
local function promote(now, batch)
  local due = redis.call('ZRANGEBYSCORE', R .. 'sched', '-inf', now, 'LIMIT', 0, batch)
  for _, id in ipairs(due) do
    local f = fields(id, 'queue', 'priority', 'run_at', 'losses', 'created_at', 'attempts',
      'token', 'worker_id')
    redis.call('ZREM', R .. 'sched', id)
    if f[1] then
      redis.call('HSET', R .. 'j:' .. id, 'updated_at', now)
      local err = move(id, f[1], f[5], 'scheduled', 'queued')
      if err then return err end
      enqueue(id, f[1], f[2], tonumber(f[3]), f[4] or 0)
      hist(id, now, 'scheduled', 'queued', 'promoted', f[6], f[7], f[8], nil)
    end
  end
end
-- Does (id, token) hold a live lease? Returns the job's fields or nil.
local LEASED = {'status', 'token', 'lease_until', 'queue', 'created_at', 'attempts',
  'worker_id', 'cancel_requested', 'priority', 'losses', 'result_ttl', 'task',
  'concurrency_key', 'cap', 'key_cap'}
local function holds(id, token, now)
  local f = fields(id, unpack(LEASED))
  if f[1] ~= 'running' or f[2] ~= token or tonumber(f[3]) <= now then return nil end
  return f
end
-- A job just ended with status: start its retention clock (its result_ttl), or, without
-- one, list it among the ended jobs of its outcome that prune ages by the policy.
local function ended(id, now, status)
  local ttl = tonumber(redis.call('HGET', R .. 'j:' .. id, 'result_ttl'))
  if finite(ttl) then redis.call('ZADD', R .. 'expire', now + ttl, id)
  else redis.call('ZADD', R .. 'fin:' .. status, now, id) end
end
-- A running job that would run again, but whose cancel was requested: cancel it instead.
local function cancel_instead(id, f, now, detail)
  local k = R .. 'j:' .. id
  ended(id, now, 'cancelled')
  free_slots(id, f[4])
  redis.call('HSET', k, 'finished_at', now, 'updated_at', now)
  redis.call('HDEL', k, 'lease_until')
  redis.call('ZREM', R .. 'run', id)
  local err = move(id, f[4], f[5], 'running', 'cancelled')
  if err then return err end
  hist(id, now, 'running', 'cancelled', 'cancelled', f[6], f[2], f[7], detail)
end
