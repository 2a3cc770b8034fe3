-- ARGV: now, worker id, lease seconds, limit, idle (1/0), register (seconds, or ''), then
-- queue, room per queue... -> the HGETALL of each claimed job: first those handed to this
-- worker and not known to be received (see handoff.lua), then those claimed now. With
-- register, a claim that finds nothing registers the worker as idle for its queues with room.
-- include: handoff.lua
local now = clock(ARGV[1])
local worker, lease, limit, idle = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
if not (finite(lease) and lease > 0) then
  return redis.error_reply('offload: lease ' .. ARGV[3] .. ' is not a finite number > 0')
end
local handed = take_handed(worker, now, lease)
local err = promote(now, __PROMOTE_BATCH__)
if err then return err end
local cands = {}
local best = nil
local function before(a, b)
  if a.prio ~= b.prio then return a.prio > b.prio end
  if a.run_at ~= b.run_at then return a.run_at < b.run_at end
  return a.id < b.id
end
local counts, buckets, dirty = {}, {}, {}
local function running_in(slot)
  if counts[slot] == nil then
    counts[slot] = tonumber(redis.call('HGET', R .. 'slots', slot) or '0')
  end
  return counts[slot]
end
-- A limited job whose slot is full is parked on that slot (see unpark), so that however many
-- wait for one key, the jobs behind them are seen; at most __PARK_BATCH__ parks per claim.
local parks = 0
local function full_slot(id)
  if parks >= __PARK_BATCH__ then return nil end
  for _, slot in ipairs(slots_of(id)) do
    if running_in(slot[1]) >= slot[2] then return slot[1] end
  end
  return nil
end
local function park(qk, id, run_at)
  local slot = full_slot(id)
  if not slot then return false end
  parks = parks + 1
  redis.call('ZREM', qk, id)
  redis.call('ZADD', R .. 'park:' .. slot, run_at, id)
  return true
end
-- The queue's priorities, best first, a page at a time: a claim reads as many as it needs.
local function priorities(key)
  local page, at, i = {}, 0, 0
  return function()
    i = i + 1
    if i > #page then
      page, i = redis.call('ZRANGE', key, at, at + __PRIORITY_PAGE__ - 1), 1
      at = at + __PRIORITY_PAGE__
    end
    return page[i]
  end
end
local function gather(queue, part, parts, want)
  local got, emptied = 0, {}
  for p in priorities(R .. parts .. queue) do
    local qk, start, kept = R .. part .. queue .. ':' .. p, 0, false
    while got < want do
      local ids = redis.call('ZRANGE', qk, start, start + want - got - 1, 'WITHSCORES')
      if #ids == 0 then break end
      for j = 1, #ids, 2 do
        if part == 'c:' and park(qk, ids[j], ids[j + 1]) then
          start = start - 1
        else
          cands[#cands + 1] = {id = ids[j], run_at = tonumber(ids[j + 1]), prio = tonumber(p),
            queue = queue, sprio = p, limited = part == 'c:'}
          got, kept = got + 1, true
        end
        start = start + 1
      end
    end
    if not kept and redis.call('EXISTS', qk) == 0 then emptied[#emptied + 1] = p end
    if got >= want then break end
  end
  for _, p in ipairs(emptied) do redis.call('ZREM', R .. parts .. queue, p) end
end
local room = {}
for i = 7, #ARGV, 2 do
  local queue, cap = ARGV[i], tonumber(ARGV[i + 1])
  local want = math.min(cap, limit)
  room[queue] = cap
  if want > 0 then
    gather(queue, 'q:', 'qp:', want)
    gather(queue, 'c:', 'cp:', want + __CAPPED_SCAN__)  -- limited: some may wait; look past them
    local sus = redis.call('ZRANGE', R .. 's:' .. queue, 0, __SUSPECT_SCAN__ - 1, 'WITHSCORES')
    for j = 1, #sus, 2 do
      local run_at = tonumber(sus[j + 1])
      if idle or run_at <= now - lease then
        local p = fields(sus[j], 'priority')[1] or '0'
        local c = {id = sus[j], run_at = run_at, prio = tonumber(p), queue = queue, sprio = p,
          limited = true}
        if best == nil or before(c, best) then best = c end
      end
    end
  end
end
table.sort(cands, before)
-- The limits of each candidate: start now, wait for a slot, or defer (see _gate.py).
local function bucket(name)
  if buckets[name] == nil then
    local v = redis.call('HGET', R .. 'tat', name)
    if v then buckets[name] = tonumber(v) else buckets[name] = now end
  end
  return buckets[name]
end
local function decide(id)
  local f = fields(id, 'task', 'concurrency_key', 'cap', 'key_cap', 'rate', 'key_rate',
    'reserved')
  if not (f[3] or f[4] or f[5] or f[6]) then return true end
  local slots = slots_of(id)
  for _, slot in ipairs(slots) do
    if running_in(slot[1]) >= slot[2] then return false end
  end
  if f[7] ~= '1' then
    local rates = {}
    if f[5] then rates[#rates + 1] = {'t\0' .. f[1], tonumber(f[5])} end
    if f[6] and f[2] then rates[#rates + 1] = {'k\0' .. f[1] .. '\0' .. f[2], tonumber(f[6])} end
    local start = now
    for _, r in ipairs(rates) do start = math.max(start, bucket(r[1])) end
    for _, r in ipairs(rates) do
      buckets[r[1]] = start + r[2]
      dirty[r[1]] = true
    end
    if start > now then return start end
  end
  for _, slot in ipairs(slots) do
    counts[slot[1]] = counts[slot[1]] + 1
    redis.call('HINCRBY', R .. 'slots', slot[1], 1)
  end
  return true
end
local function defer(c, start)
  local k = R .. 'j:' .. c.id
  dequeue(c.id, c.queue, c.sprio)
  redis.call('HSET', k, 'run_at', start, 'reserved', '1', 'updated_at', now)
  redis.call('ZADD', R .. 'sched', start, c.id)
  local f = fields(c.id, 'created_at', 'attempts', 'token', 'worker_id')
  local e = move(c.id, c.queue, f[1], 'queued', 'scheduled')
  if e then return e end
  hist(c.id, now, 'queued', 'scheduled', 'rate_limited', f[2], f[3], f[4], nil)
end
local picked = {}
-- A queued id whose job hash is gone (evicted, deleted) or not queued: drop it, write nothing.
-- What the claim needs of a picked job is read here too (nothing else in this script
-- changes it): its token, attempts and created_at.
local function present(c)
  c.f = fields(c.id, 'status', 'token', 'attempts', 'created_at')
  if c.f[1] == 'queued' then return true end
  dequeue(c.id, c.queue, c.sprio)
  return false
end
local function consider(c)
  if not present(c) then return false end
  local verdict = true
  if c.limited then verdict = decide(c.id) end
  if verdict == true then
    picked[#picked + 1] = c
    return true
  end
  if verdict ~= false then
    local e = defer(c, verdict)
    if e then return e end
  else
    -- Its slot filled up during this claim: park it too, so that what stays ready can start.
    local slot = full_slot(c.id)
    if slot then
      parks = parks + 1
      dequeue(c.id, c.queue, c.sprio)
      redis.call('ZADD', R .. 'park:' .. slot, c.run_at, c.id)
    end
  end
  return false
end
if best and (#cands == 0 or before(best, cands[1])) then
  local e = consider(best)  -- a suspect comes first: it runs alone
  if type(e) == 'table' then return e end
end
if #picked == 0 then
  local taken = {}
  for _, c in ipairs(cands) do
    if #picked >= limit then break end
    if (taken[c.queue] or 0) < room[c.queue] then
      local ok = consider(c)
      if type(ok) == 'table' then return ok end
      if ok then taken[c.queue] = (taken[c.queue] or 0) + 1 end
    end
  end
end
for name, _ in pairs(dirty) do redis.call('HSET', R .. 'tat', name, buckets[name]) end
-- queued -> running (always allowed): each job's hash now, the shared keys once at the end.
local out, runs, moved = handed, {}, changes()
local until_ = now + lease
for _, c in ipairs(picked) do
  local k = R .. 'j:' .. c.id
  local f = c.f
  local token, attempts = (tonumber(f[2]) or 0) + 1, (tonumber(f[3]) or 0) + 1
  redis.call('HSET', k, 'token', token, 'attempts', attempts, 'status', 'running',
    'worker_id', worker, 'lease_until', until_, 'started_at', now, 'updated_at', now)
  redis.call('HDEL', k, 'progress', 'progress_message', 'reserved')
  dequeue(c.id, c.queue, c.sprio)
  runs[#runs + 1] = until_
  runs[#runs + 1] = c.id
  moved.add(c.id, c.queue, f[4], 'queued', 'running')
  hist(c.id, now, 'queued', 'running', 'claimed', attempts, token, worker, nil)
  out[#out + 1] = redis.call('HGETALL', k)
end
bulk('ZADD', R .. 'run', runs)
moved.flush()
if #out == 0 and ARGV[6] ~= '' then
  local queues = {}
  for i = 7, #ARGV, 2 do
    if tonumber(ARGV[i + 1]) > 0 then queues[#queues + 1] = ARGV[i] end
  end
  if #queues > 0 then register(worker, lease, tonumber(ARGV[6]), queues) end
end
return out
