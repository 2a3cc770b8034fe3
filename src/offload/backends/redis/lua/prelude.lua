-- The prelude of every script but a LEAN one (offload.backends.redis.scripts puts it before each):
-- base.lua (KEYS[1] as the namespace root R, the clock, number helpers), ALLOWED the state
-- machine generated from offload.core.states.TRANSITIONS, and the helpers the transitions share.
-- Placeholders (a capitalised name between double underscores) take the values of
-- scripts.VALUES at load.
-- include: base.lua
local ALLOWED = __TRANSITIONS__
-- The statuses a job ends with: it then leaves its hash for a bucket (retire()).
local ENDS = {succeeded = true, failed = true, cancelled = true}
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
    if not ENDS[to] then  -- an ended job is listed from its bucket
      local i = c.into[to] or {}
      i[#i + 1] = created
      i[#i + 1] = id
      c.into[to] = i
    end
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
-- A job's history: an h: list while it lives, after its submit (implied by created_at and
-- submitted_as). When it ends, retire() moves the job out of its hash, list and listing
-- indexes into one compact record: a field of the bucket hash f:<B> of its creation time
-- (B = floor(created_at / BUCKET_SECONDS)), a JSON array {created_at, queue, status, history,
-- extras (0 or a flat list of names and values of fields it does not name), then the values of
-- ENDED_FIELDS in order, 0 for an absent one or one of the usual value ENDED_DEFAULTS
-- names, trailing 0s left out}. A history entry's time
-- is 1 or 2 when it is the job's started_at or finished_at, its reason 0 when it is the new
-- status, its worker 1 when it is the job's worker_id, trailing falses left out; the fields
-- only running needs go, updated_at and run_at when they repeat finished_at and created_at,
-- priority and losses when 0 (records.py reads them back). A job whose id's time (its first
-- 12 hex digits, ms) falls in another bucket gets a pointer in the hash fp (id -> B).
-- A bucket takes BUCKET_FULL records at most: once full, a job goes to the bucket of its
-- slice of the second instead, 'B.S' (S = the 1/BUCKET_SLICES of the second it was created
-- in), so that at high rates listing reads a slice, not the second (home(); an id's own
-- buckets, id_homes(), are its second's and its time's slice and the next one).
-- Buckets are listed in fb (score B; B.S: B + (S + 1) / (2 * BUCKET_SLICES), in order
-- between B and B + 1), scheduled for prune in fe (score: the soonest
-- finished_at + result_ttl of its members) and ff:<status> (the soonest finished_at of its
-- members of that outcome without a result_ttl).
-- include: ended_read.lua
local DROP = {id = true, lease_until = true, cap = true, key_cap = true, rate = true,
  key_rate = true}
-- The bucket a job created at `at` ends in (its name, its score in fb).
local function home(at)
  local u = at / G
  local b = math.floor(u)
  if redis.call('HLEN', R .. 'f:' .. bname(b)) < FULL then return bname(b), b end
  local s = math.floor((u - b) * SLICES)
  return slice_name(b, s), string.format('%.17g', b + (s + 1) / (2 * SLICES))
end
-- A job's hash as a table (HGETALL's flat reply).
local function as_map(flat)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end
-- A history entry as its record holds it (see above), added to entries.
local function put(entries, h, e)
  if e[1] == h.started_at then e[1] = 1 elseif e[1] == h.finished_at then e[1] = 2 end
  if e[4] == e[3] then e[4] = 0 end
  if h.worker_id and e[7] == h.worker_id then e[7] = 1 end
  while #e > 0 and e[#e] == false do e[#e] = nil end
  entries[#entries + 1] = e
end
-- over (optional): field -> value (false: deleted) the job ends with, applied to what its
-- hash holds instead of being written to the hash retire() deletes. h (optional): the
-- hash as a table, read by the caller in this call (holds_all()) and unchanged since; it
-- is consumed (changed).
local function retire(id, last, over, h)
  local k, hk = R .. 'j:' .. id, R .. 'h:' .. id
  local raw = redis.call('LRANGE', hk, 0, -1)
  h = h or as_map(redis.call('HGETALL', k))
  if over then
    for name, v in pairs(over) do h[name] = v or nil end
  end
  local entries = {}
  for i = 1, #raw do put(entries, h, cjson.decode(raw[i])) end
  put(entries, h, last)
  if h.updated_at == h.finished_at then h.updated_at = nil end
  if h.run_at == h.created_at then h.run_at = nil end
  if h.priority == '0' then h.priority = nil end
  if h.losses == '0' then h.losses = nil end
  local rec, extra = {h.created_at, 0, h.status, entries, 0}, {}
  for i = 1, #FIELDS do rec[i + 5] = 0 end
  for name, v in pairs(h) do
    if v == USUAL[name] then  -- left 0: read back as the usual value
    elseif SLOT[name] then rec[SLOT[name]] = v
    elseif not DROP[name] then extra[#extra + 1] = name; extra[#extra + 1] = v end
  end
  if #extra > 0 then rec[5] = extra end
  while rec[#rec] == 0 do rec[#rec] = nil end
  local name, score = home(tonumber(h.created_at))
  redis.call('HSET', R .. 'f:' .. name, id, cjson.encode(rec))
  if not homed(id, name) then redis.call('HSET', R .. 'fp', id, name) end
  redis.call('ZADD', R .. 'fb', score, name)
  redis.call('DEL', R .. 'fo:' .. name .. ':' .. h.queue)  -- the cap's order of the bucket
  local ttl = tonumber(h.result_ttl)
  if finite(ttl) then
    redis.call('ZADD', R .. 'fe', 'LT', tonumber(h.finished_at) + ttl, name)
  else
    redis.call('ZADD', R .. 'ff:' .. h.status, 'LT', tonumber(h.finished_at), name)
  end
  redis.call('ZREM', R .. 'i:all', id)
  redis.call('ZREM', R .. 'i:tk:' .. h.task, id)
  redis.call('ZREM', R .. 'i:q:' .. h.queue, id)
  redis.call('ZREM', R .. 'i:tn:' .. h.tenant, id)
  redis.call('DEL', k, hk)
end
local function hist(id, at, from, to, reason, attempt, token, worker, detail, over, h)
  local entry = {fnum(at), from or false, to, reason, tonumber(attempt), tonumber(token),
    worker or false, detail or false}
  if ENDS[to] then return retire(id, entry, over, h) end
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
  if not ENDS[to] then redis.call('ZADD', R .. 'i:st:' .. to, created, id) end
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
-- holds() from the job's whole hash (one HGETALL): its fields in LEASED's order (false for an
-- absent one, as HMGET gives) and the hash as a table, for a finish that retires the job
-- (retire() then reads the hash no second time).
local function holds_all(id, token, now)
  local h = as_map(redis.call('HGETALL', R .. 'j:' .. id))
  if h.status ~= 'running' or h.token ~= token or tonumber(h.lease_until or false) <= now then
    return nil
  end
  local f = {}
  for i = 1, #LEASED do f[i] = h[LEASED[i]] or false end
  return f, h
end
-- A running job that would run again, but whose cancel was requested: cancel it instead.
local function cancel_instead(id, f, now, detail)
  local k = R .. 'j:' .. id
  free_slots(id, f[4])
  redis.call('HSET', k, 'finished_at', now, 'updated_at', now)
  redis.call('HDEL', k, 'lease_until')
  redis.call('ZREM', R .. 'run', id)
  local err = move(id, f[4], f[5], 'running', 'cancelled')
  if err then return err end
  hist(id, now, 'running', 'cancelled', 'cancelled', f[6], f[2], f[7], detail)
end
