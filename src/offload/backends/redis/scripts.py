"""The Redis backend's Lua scripts: every state transition is one script, run atomically.

Each script gets one key, the namespace root ``{prefix}:`` (KEYS[1]); every key it touches is
that root plus a suffix, so all of a namespace's keys share one hash tag (one Redis Cluster
slot). ``ARGV[1]`` is the time to use, or ``""`` to take it from Redis ``TIME`` (production:
leases and due times never depend on a worker's clock; tests pass a manual clock's time).

Layout under the root ``R``:

- ``R j:<id>``                 hash: the job's fields (absent field = None)
- ``R h:<id>``                 list: the job's transitions after its submit, JSON arrays (the
                               submit is implied by the job's created_at and submitted_as)
- ``R q:<queue>:<priority>``   zset of ready jobs with no lost lease, score run_at
- ``R qp:<queue>``             zset of the priorities that have ready jobs, score -priority
- ``R c:<queue>:<priority>``   zset of ready jobs of *limited* tasks (caps or rate limits: a
                               claim checks them), score run_at; ``R cp:<queue>`` priorities
- ``R s:<queue>``              zset of ready *suspects* (losses > 0), score run_at
- ``R park:<slot>``            zset of queued jobs of limited tasks that found ``slot`` full at a
                               claim, score run_at: out of the claims' way until it frees
- ``R slots``                  hash ``t\0<task>`` / ``k\0<task>\0<key>`` -> running capped jobs
- ``R tat``                    hash: rate bucket (same names) -> next allowed start
- ``R sched``                  zset of scheduled jobs, score run_at
- ``R run``                    zset of running jobs, score lease_until
- ``R expire``                 zset of ended jobs that have a result_ttl, score when to prune
- ``R counts``                 hash ``<queue>\\0<status>`` -> count
- ``R i:all`` / ``i:st:<status>`` / ``i:tk:<task>`` / ``i:q:<queue>`` / ``i:tn:<tenant>``
                               zsets for listing, score created_at
- ``R idem:<tenant>\\0<key>``  string ``<job id>\\0<fingerprint>\\0<expires at>``
- ``R w`` / ``R wseen`` / ``R wexp``  live workers: info JSON, last seen, expiry
- channel ``R wake``           a queue name, published when that queue stops being empty

Floats are written by passing Lua numbers to ``redis.call`` (exact round trip) and returned
as ``%.17g`` strings; never through ``tostring`` or cjson, which keep 14 digits.
"""

from __future__ import annotations

from offload.backends.base import IDEMPOTENCY_WINDOW
from offload.core.bounds import PRIORITY_MAX, PRIORITY_MIN
from offload.core.states import TRANSITIONS

#: Most due scheduled jobs one claim promotes (the rest wait for the next claim).
PROMOTE_BATCH = 100
#: Most suspects per queue one claim looks at.
SUSPECT_SCAN = 100


def _transitions_table() -> str:
    rows = []
    for source, targets in TRANSITIONS.items():
        name = "new" if source is None else source.value
        allowed = ", ".join(f"['{t.value}'] = true" for t in sorted(targets))
        rows.append(f"['{name}'] = {{{allowed}}}")
    return "{" + ", ".join(rows) + "}"


PRELUDE = (
    """
local R = KEYS[1]
local ALLOWED = """
    + _transitions_table()
    + """
local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fnum(x) return string.format('%.17g', x) end
-- A number that can be a score or a time: not nil, not NaN, not infinite.
local function finite(x) return x ~= nil and x == x and x ~= math.huge and x ~= -math.huge end
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
local function opt(s) if s == nil or s == '' then return nil end return string.sub(s, 2) end
local function fields(id, ...)
  return redis.call('HMGET', R .. 'j:' .. id, ...)
end
local function hist(id, at, from, to, reason, attempt, token, worker, detail)
  redis.call('RPUSH', R .. 'h:' .. id, cjson.encode({fnum(at), from or false, to, reason,
    tonumber(attempt), tonumber(token), worker or false, detail or false}))
end
-- Count, index and record a status change (from = nil for a new job).
local function move(id, queue, created, from, to)
  if not ALLOWED[from or 'new'][to] then
    return redis.error_reply('offload: transition ' .. (from or 'new') .. ' -> ' .. to ..
      ' of job ' .. id .. ' is not allowed')
  end
  if from then
    redis.call('HINCRBY', R .. 'counts', queue .. '\\0' .. from, -1)
    redis.call('ZREM', R .. 'i:st:' .. from, id)
  end
  redis.call('HINCRBY', R .. 'counts', queue .. '\\0' .. to, 1)
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
-- A job just ended: start its retention clock, if it has one.
local function ended(id, now)
  local ttl = tonumber(redis.call('HGET', R .. 'j:' .. id, 'result_ttl'))
  if finite(ttl) then redis.call('ZADD', R .. 'expire', now + ttl, id) end
end
-- A running job that would run again, but whose cancel was requested: cancel it instead.
local function cancel_instead(id, f, now, detail)
  local k = R .. 'j:' .. id
  ended(id, now)
  free_slots(id, f[4])
  redis.call('HSET', k, 'finished_at', now, 'updated_at', now)
  redis.call('HDEL', k, 'lease_until')
  redis.call('ZREM', R .. 'run', id)
  local err = move(id, f[4], f[5], 'running', 'cancelled')
  if err then return err end
  hist(id, now, 'running', 'cancelled', 'cancelled', f[6], f[2], f[7], detail)
end
"""
)

# ARGV: now, idempotency window, then one JSON array per group (one group per submit call,
# each all-or-none) of jobs, each an array of 18 strings (see RedisBackend._submit_groups).
# Reply: now, then per group {'invalid', why}, {'conflict', key, job id} or {'ok', per job
# {'new', status, run_at} or {'old', HGETALL...}}. Index and queue updates are collected and
# sent once per key.
# The 18 strings: id, task, queue, priority, delay, run_at, idempotency key, fingerprint,
# concurrency key, tenant, args, kwargs, meta, result_ttl, cap, key_cap, rate, key_rate
# (optional ones "" or "=" + value).
# The submit machinery as functions over the script's ``now`` and ``window`` (FINISH uses it
# too: a workflow step's success submits what follows it in the same script run).
SUBMIT_LIB = """
local seen = {}  -- idempotency key -> {job id, fingerprint}, as stored by earlier groups
local zadds, counts, ready = {}, {}, {}
local function zadd(key, score, member)
  local t = zadds[key]
  if not t then t = {}; zadds[key] = t end
  t[#t + 1] = score
  t[#t + 1] = member
end
local function lookup(ik)
  if seen[ik] then return seen[ik] end
  local raw = redis.call('GET', ik)
  if not raw then return nil end
  local a, c = string.find(raw, '\\0', 1, true)
  local rest = string.sub(raw, c + 1)
  local d, e = string.find(rest, '\\0', 1, true)
  if tonumber(string.sub(rest, e + 1)) <= now then return nil end
  local id = string.sub(raw, 1, a - 1)
  if redis.call('EXISTS', R .. 'j:' .. id) == 0 then return nil end  -- pruned
  return {id, string.sub(rest, 1, d - 1)}
end
local function store(job)
  local id, task, queue, prio, delay, run_at, key, _, ckey, tenant, args, kwargs, meta, ttl,
    cap, key_cap, rate, key_rate = unpack(job)
  local k = R .. 'j:' .. id
  if redis.call('HSETNX', k, 'id', id) == 0 then  -- a resubmitted id: the job as stored
    return {'old', unpack(redis.call('HGETALL', k))}
  end
  run_at = opt(run_at)
  if run_at then run_at = tonumber(run_at) else run_at = now + math.max(0, tonumber(delay)) end
  local status = 'queued'
  if run_at > now then status = 'scheduled' end
  redis.call('HSET', k, 'task', task, 'queue', queue, 'priority', prio, 'status', status,
    'submitted_as', status, 'attempts', 0, 'losses', 0, 'token', 0, 'run_at', run_at,
    'created_at', now, 'updated_at', now, 'tenant', tenant, 'args', args, 'kwargs', kwargs,
    'meta', meta)
  key, ckey = opt(key), opt(ckey)
  if key then redis.call('HSET', k, 'idempotency_key', key) end
  if ckey then redis.call('HSET', k, 'concurrency_key', ckey) end
  if ttl ~= '' then redis.call('HSET', k, 'result_ttl', opt(ttl)) end
  for name, value in pairs({cap = cap, key_cap = key_cap, rate = rate, key_rate = key_rate}) do
    if value ~= '' then redis.call('HSET', k, name, opt(value)) end
  end
  local part = 'q:'
  if cap ~= '' or key_cap ~= '' or rate ~= '' or key_rate ~= '' then part = 'c:' end
  for _, idx in ipairs({'i:all', 'i:tk:' .. task, 'i:q:' .. queue, 'i:tn:' .. tenant,
                        'i:st:' .. status}) do
    zadd(R .. idx, now, id)
  end
  local field = queue .. '\\0' .. status
  counts[field] = (counts[field] or 0) + 1
  if status == 'queued' then
    zadd(R .. part .. queue .. ':' .. prio, run_at, id)
    ready[part .. queue] = ready[part .. queue] or {queue = queue, part = part}
    ready[part .. queue][prio] = true
  else
    zadd(R .. 'sched', run_at, id)
  end
  -- The submit's own history entry is implied by created_at and submitted_as.
  return {'new', status, fnum(run_at)}
end
-- Why a job's numbers cannot be stored (nil: they can). Checked before a group writes.
local function invalid(job)
  local prio = tonumber(job[4])
  if not finite(prio) or prio < PRIORITY_MIN or prio > PRIORITY_MAX
    or job[4] ~= string.format('%d', prio) then
    return 'priority ' .. job[4] .. ' is not a whole number from PRIORITY_MIN to PRIORITY_MAX'
  end
  if not finite(tonumber(job[5])) then return 'delay ' .. job[5] .. ' is not finite' end
  local numbers = {run_at = job[6], result_ttl = job[14], concurrency = job[15],
    key_concurrency = job[16], rate_limit = job[17], key_rate_limit = job[18]}
  for name, raw in pairs(numbers) do
    local v = opt(raw)
    if v and not (finite(tonumber(v)) and (name == 'run_at' or tonumber(v) >= 0)) then
      return name .. ' ' .. v .. ' is not a finite number >= 0'
    end
  end
  return nil
end
-- One group of jobs (one submit call), all or none: {'invalid', why}, {'conflict', key, job
-- id} or {'ok', ...}.
local function submit_group(jobs)
  -- Pass 1: check numbers, resolve idempotency keys; write nothing yet.
  local mine, plan, conflict = {}, {}, nil
  for _, job in ipairs(jobs) do
    local why = invalid(job)
    if why then
      conflict = {'invalid', 'job ' .. job[1] .. ': ' .. why}
      break
    end
  end
  for i, job in ipairs(conflict and {} or jobs) do
    local key = opt(job[7])
    if key then
      local ik = R .. 'idem:' .. job[10] .. '\\0' .. key
      local entry = mine[ik] or lookup(ik)
      if entry and entry[2] ~= job[8] then
        conflict = {'conflict', key, entry[1]}
        break
      end
      if entry then plan[i] = entry[1] else mine[ik] = {job[1], job[8]} end
    end
  end
  if conflict then
    return conflict
  else
    -- Pass 2: store the new jobs; a repeated key names the job stored first.
    local group = {'ok'}
    for i, job in ipairs(jobs) do
      if plan[i] then
        group[#group + 1] = {'old', unpack(redis.call('HGETALL', R .. 'j:' .. plan[i]))}
      else
        group[#group + 1] = store(job)
      end
    end
    for ik, entry in pairs(mine) do
      seen[ik] = entry
      redis.call('SET', ik, entry[1] .. '\\0' .. entry[2] .. '\\0' .. fnum(now + window),
        'PX', math.floor(window * 1000) + 60000)
    end
    return group
  end
end
-- Apply the collected updates: a queue that had nothing ready wakes idle workers.
local function apply_submits()
local parts = {['q:'] = 'qp:', ['c:'] = 'cp:'}
local woke = {}
for name, r in pairs(ready) do
  woke[name] = redis.call('EXISTS', R .. parts[r.part] .. r.queue) == 0
end
for key, t in pairs(zadds) do
  for i = 1, #t, 2000 do
    redis.call('ZADD', key, unpack(t, i, math.min(i + 1999, #t)))
  end
end
for field, n in pairs(counts) do redis.call('HINCRBY', R .. 'counts', field, n) end
for name, r in pairs(ready) do
  for prio, _ in pairs(r) do
    if prio ~= 'queue' and prio ~= 'part' then
      redis.call('ZADD', R .. parts[r.part] .. r.queue, -tonumber(prio), prio)
    end
  end
  if woke[name] then redis.call('PUBLISH', R .. 'wake', r.queue) end
end
zadds, counts, ready = {}, {}, {}
end
""".replace("PRIORITY_MIN", str(PRIORITY_MIN)).replace("PRIORITY_MAX", str(PRIORITY_MAX))

SUBMIT = (
    """
local now = clock(ARGV[1])
local window = tonumber(ARGV[2])
"""
    + SUBMIT_LIB
    + """
local out = {fnum(now)}
for g = 3, #ARGV do out[#out + 1] = submit_group(cjson.decode(ARGV[g])) end
apply_submits()
return out
"""
)

#: Jobs waiting for a concurrency slot one claim looks past, per queue.
CAPPED_SCAN = 64
#: Most jobs one claim parks because their slot is full (each is parked once per wait).
PARK_BATCH = 1000
#: Priorities one claim reads at a time (it reads only as many pages as it needs).
PRIORITY_PAGE = 16

CLAIM = (
    """
local now = clock(ARGV[1])
local worker, lease, limit, idle = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
if not (finite(lease) and lease > 0) then
  return redis.error_reply('offload: lease ' .. ARGV[3] .. ' is not a finite number > 0')
end
local err = promote(now, PROMOTE_BATCH)
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
-- wait for one key, the jobs behind them are seen; at most PARK_BATCH parks per claim.
local parks = 0
local function full_slot(id)
  if parks >= PARK_BATCH then return nil end
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
      page, i = redis.call('ZRANGE', key, at, at + PRIORITY_PAGE - 1), 1
      at = at + PRIORITY_PAGE
    end
    return page[i]
  end
end
local function gather(queue, part, parts, want)
  local got, emptied = 0, {}
  for p in priorities(R .. parts .. queue) do
    local qk, start = R .. part .. queue .. ':' .. p, 0
    while got < want do
      local ids = redis.call('ZRANGE', qk, start, start + want - got - 1, 'WITHSCORES')
      if #ids == 0 then break end
      for j = 1, #ids, 2 do
        if part == 'c:' and park(qk, ids[j], ids[j + 1]) then
          start = start - 1
        else
          cands[#cands + 1] = {id = ids[j], run_at = tonumber(ids[j + 1]), prio = tonumber(p),
            queue = queue, sprio = p, limited = part == 'c:'}
          got = got + 1
        end
        start = start + 1
      end
    end
    if redis.call('EXISTS', qk) == 0 then emptied[#emptied + 1] = p end
    if got >= want then break end
  end
  for _, p in ipairs(emptied) do redis.call('ZREM', R .. parts .. queue, p) end
end
local room = {}
for i = 6, #ARGV, 2 do
  local queue, cap = ARGV[i], tonumber(ARGV[i + 1])
  local want = math.min(cap, limit)
  room[queue] = cap
  if want > 0 then
    gather(queue, 'q:', 'qp:', want)
    gather(queue, 'c:', 'cp:', want + CAPPED_SCAN)  -- limited: some may wait; look past them
    local sus = redis.call('ZRANGE', R .. 's:' .. queue, 0, SUSPECT_SCAN - 1, 'WITHSCORES')
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
    if f[5] then rates[#rates + 1] = {'t\\0' .. f[1], tonumber(f[5])} end
    if f[6] and f[2] then rates[#rates + 1] = {'k\\0' .. f[1] .. '\\0' .. f[2], tonumber(f[6])} end
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
local function present(c)
  if fields(c.id, 'status')[1] == 'queued' then return true end
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
local out, runs, moved = {}, {}, changes()
local until_ = now + lease
for _, c in ipairs(picked) do
  local k = R .. 'j:' .. c.id
  local f = redis.call('HMGET', k, 'token', 'attempts', 'created_at')
  local token, attempts = (tonumber(f[1]) or 0) + 1, (tonumber(f[2]) or 0) + 1
  redis.call('HSET', k, 'token', token, 'attempts', attempts, 'status', 'running',
    'worker_id', worker, 'lease_until', until_, 'started_at', now, 'updated_at', now)
  redis.call('HDEL', k, 'progress', 'progress_message', 'reserved')
  dequeue(c.id, c.queue, c.sprio)
  runs[#runs + 1] = until_
  runs[#runs + 1] = c.id
  moved.add(c.id, c.queue, f[3], 'queued', 'running')
  hist(c.id, now, 'queued', 'running', 'claimed', attempts, token, worker, nil)
  out[#out + 1] = redis.call('HGETALL', k)
end
bulk('ZADD', R .. 'run', runs)
moved.flush()
return out
""".replace("PROMOTE_BATCH", str(PROMOTE_BATCH))
    .replace("SUSPECT_SCAN - 1", str(SUSPECT_SCAN - 1))
    .replace("CAPPED_SCAN", str(CAPPED_SCAN))
    .replace("PARK_BATCH", str(PARK_BATCH))
    .replace("PRIORITY_PAGE", str(PRIORITY_PAGE))
)

RENEW = """
local now = clock(ARGV[1])
local extend = ARGV[2] ~= ''
local until_ = nil
if extend then until_ = now + tonumber(ARGV[2]) end
if extend and not finite(until_) then
  return redis.error_reply('offload: lease ' .. ARGV[2] .. ' is not a finite number')
end
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local f = holds(id, ARGV[i + 1], now)
  if not f then
    lost[#lost + 1] = id
  else
    if f[8] == '1' then cancel[#cancel + 1] = id end
    if extend then
      redis.call('HSET', R .. 'j:' .. id, 'lease_until', until_)
      redis.call('ZADD', R .. 'run', until_, id)
    end
  end
end
return {lost, cancel}
"""

PROGRESS = """
local now = clock(ARGV[1])
local id = ARGV[2]
if not holds(id, ARGV[3], now) then return 'lost' end
local k = R .. 'j:' .. id
local fraction, message = opt(ARGV[4]), opt(ARGV[5])
redis.call('HDEL', k, 'progress', 'progress_message')
redis.call('HSET', k, 'updated_at', now)
if fraction then redis.call('HSET', k, 'progress', tonumber(fraction)) end
if message then redis.call('HSET', k, 'progress_message', message) end
return 'ok'
"""

# ARGV: now, cancel-instead detail, then ops (one per call): arg count, id, token, op, and
# per op: finish -> target, reason, result, error, detail, jobs to submit with it ("" or "="
# + a JSON array of SUBMIT's job arrays); retry -> retry_in, error, detail; release ->
# nothing. Reply: per op 'lost', 'ok', 'invalid' (a bad retry delay), or for the successors
# 'invalid\\0<why>' or 'conflict\\0<key>\\0<job id>' (then nothing is written).
FINISH = (
    """
local now = clock(ARGV[1])
local instead = ARGV[2]
local window = """
    + repr(IDEMPOTENCY_WINDOW)
    + SUBMIT_LIB
    + """
-- Ended jobs: what leaves 'run', enters 'expire', frees slots; written once per key.
local ran, expiring, woken, moved = {}, {}, {}, changes()
local function flush()
  bulk('ZREM', R .. 'run', ran)
  bulk('ZADD', R .. 'expire', expiring)
  moved.flush()
  apply_submits()
  for queue, _ in pairs(woken) do redis.call('PUBLISH', R .. 'wake', queue) end
  ran, expiring, woken = {}, {}, {}
end
local function finish(A)
  local id, op = A[1], A[3]
  if op == 'retry' and not (finite(tonumber(A[4])) and tonumber(A[4]) >= 0) then
    return 'invalid'  -- before any write: a bad delay must not half-apply the batch
  end
  local f = holds(id, A[2], now)
  if not f then return 'lost' end
  local k = R .. 'j:' .. id
  local queue, created = f[4], f[5]
  if op == 'finish' then
    local target, reason, result, error, detail = A[4], A[5], opt(A[6]), opt(A[7]), opt(A[8])
    if not ALLOWED['running'][target] then
      return redis.error_reply('offload: transition running -> ' .. target .. ' of job ' ..
        id .. ' is not allowed')
    end
    local after = opt(A[9])  -- a workflow step's successors: stored with its success
    if after then
      local group = submit_group(cjson.decode(after))
      if group[1] == 'invalid' then return 'invalid\\0' .. group[2] end
      if group[1] == 'conflict' then return 'conflict\\0' .. group[2] .. '\\0' .. group[3] end
    end
    local sets, dels = {'finished_at', now, 'updated_at', now, 'status', target}, {'lease_until'}
    if result then sets[#sets + 1] = 'result'; sets[#sets + 1] = result
    else dels[#dels + 1] = 'result' end
    if error then sets[#sets + 1] = 'error'; sets[#sets + 1] = error
    else dels[#dels + 1] = 'error' end
    redis.call('HSET', k, unpack(sets))
    redis.call('HDEL', k, unpack(dels))
    ran[#ran + 1] = id
    if finite(tonumber(f[11])) then
      expiring[#expiring + 1] = now + tonumber(f[11])
      expiring[#expiring + 1] = id
    end
    if release_slots(slots_for(f[12], f[13], f[14], f[15])) then woken[queue] = true end
    moved.add(id, queue, created, 'running', target)
    hist(id, now, 'running', target, reason, f[6], f[2], f[7], detail)
  elseif f[8] == '1' then
    local err = cancel_instead(id, f, now, instead)
    if err then return err end
  else
    redis.call('ZREM', R .. 'run', id)
    free_slots(id, queue)
    redis.call('HDEL', k, 'worker_id', 'lease_until')
    if op == 'retry' then
      local run_at = now + tonumber(A[4])
      local target = 'queued'
      if tonumber(A[4]) > 0 then target = 'scheduled' end
      redis.call('HSET', k, 'run_at', run_at, 'error', A[5], 'updated_at', now)
      local err = move(id, queue, created, 'running', target)
      if err then return err end
      if target == 'queued' then enqueue(id, queue, f[9], run_at, f[10])
      else redis.call('ZADD', R .. 'sched', run_at, id) end
      hist(id, now, 'running', target, 'retry', f[6], f[2], f[7], opt(A[6]))
    else -- release: requeue at once and refund the attempt
      redis.call('HSET', k, 'run_at', now, 'updated_at', now)
      redis.call('HINCRBY', k, 'attempts', -1)
      local err = move(id, queue, created, 'running', 'queued')
      if err then return err end
      enqueue(id, queue, f[9], now, f[10])
      hist(id, now, 'running', 'queued', 'released', f[6], f[2], f[7], nil)
    end
  end
  return 'ok'
end
local out = {}
local pos = 3
while pos <= #ARGV do
  local n = tonumber(ARGV[pos])
  local reply = finish({unpack(ARGV, pos + 1, pos + n)})
  if type(reply) == 'table' then  -- an error reply: keep what the earlier ops did consistent
    flush()
    return reply
  end
  out[#out + 1] = reply
  pos = pos + 1 + n
end
flush()
return out
"""
)

CANCEL = """
local now = clock(ARGV[1])
local id = ARGV[2]
local k = R .. 'j:' .. id
local f = fields(id, 'status', 'queue', 'priority', 'created_at', 'attempts', 'token',
  'worker_id')
local status = f[1]
if not status then return {'missing'} end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return {'invalid', status}
end
redis.call('HSET', k, 'updated_at', now)
if status == 'running' then
  redis.call('HSET', k, 'cancel_requested', '1')
else
  if status == 'scheduled' then redis.call('ZREM', R .. 'sched', id)
  else
    dequeue(id, f[2], f[3])
    -- It may have been the one unparked for a slot with room: give its turn to the next.
    for _, slot in ipairs(slots_of(id)) do unpark(slot[1], 1) end
  end
  redis.call('HSET', k, 'finished_at', now)
  ended(id, now)
  local err = move(id, f[2], f[4], status, 'cancelled')
  if err then return err end
  hist(id, now, status, 'cancelled', 'cancelled', f[5], f[6], f[7], nil)
end
return {'ok', unpack(redis.call('HGETALL', k))}
"""

# ARGV: now, limit, max_losses, cancel-instead detail
REAP = """
local now = clock(ARGV[1])
local max_losses = tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', R .. 'run', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(expired) do
  local k = R .. 'j:' .. id
  local f = fields(id, unpack(LEASED))
  redis.call('ZREM', R .. 'run', id)
  -- A missing or partial hash (no queue, no created_at) has nothing left to requeue.
  local live = f[1] == 'running' and f[4] and f[5]
  if live and f[8] ~= '1' then free_slots(id, f[4]) end  -- cancel_instead frees
  if live then
    local losses = redis.call('HINCRBY', k, 'losses', 1)
    if f[8] == '1' then
      local err = cancel_instead(id, f, now, ARGV[4])
      if err then return err end
    elseif losses >= max_losses then
      local message = string.format("the job's worker was lost %d times", losses)
      redis.call('HSET', k, 'error', cjson.encode({type = 'WorkerLost', message = message}),
        'finished_at', now, 'updated_at', now)
      redis.call('HDEL', k, 'lease_until')
      ended(id, now)
      local err = move(id, f[4], f[5], 'running', 'failed')
      if err then return err end
      hist(id, now, 'running', 'failed', 'worker_lost', f[6], f[2], f[7], message)
    else
      redis.call('HSET', k, 'run_at', now, 'updated_at', now)
      redis.call('HDEL', k, 'worker_id', 'lease_until')
      local err = move(id, f[4], f[5], 'running', 'queued')
      if err then return err end
      enqueue(id, f[4], f[9], now, losses)
      hist(id, now, 'running', 'queued', 'lease_expired', f[6], f[2], f[7], nil)
    end
  end
end
return #expired
"""

# ARGV: now, grace, limit -> how many leases of dead workers' jobs were ended (then run REAP)
# It looks at the `limit` running jobs whose leases end first: a dead worker's leases are no
# longer renewed, so they come first among the leases of live workers.
RECLAIM = """
local now = clock(ARGV[1])
local since = now - tonumber(ARGV[2])
local ended = 0
local live = redis.call('ZRANGEBYSCORE', R .. 'run', '(' .. fnum(now), '+inf', 'LIMIT', 0,
  tonumber(ARGV[3]))
for _, id in ipairs(live) do
  local f = fields(id, 'status', 'worker_id', 'started_at')
  local expiry = f[2] and redis.call('ZSCORE', R .. 'wexp', f[2])
  if f[1] == 'running' and f[3] and tonumber(f[3]) <= since
      and (not expiry or tonumber(expiry) <= now) then
    redis.call('HSET', R .. 'j:' .. id, 'lease_until', now)
    redis.call('ZADD', R .. 'run', now, id)
    ended = ended + 1
  end
end
return ended
"""

# ARGV: now, queues...  -> {innocent work ready (0/1), earliest due or '', now}. Jobs of
# limited tasks count: a claim parks those whose slot is full (see CLAIM), so what is left in
# ``c:`` can start or be deferred.
READY = """
local now = clock(ARGV[1])
for i = 2, #ARGV do
  if redis.call('EXISTS', R .. 'qp:' .. ARGV[i]) == 1 or
    redis.call('EXISTS', R .. 'cp:' .. ARGV[i]) == 1 then
    return {1, '', fnum(now)}
  end
end
local due = redis.call('ZRANGE', R .. 'sched', 0, 0, 'WITHSCORES')
if #due == 0 then return {0, '', fnum(now)} end
return {0, due[2], fnum(now)}
"""

# ARGV: now, worker id, ttl, info JSON (without last_seen)
HEARTBEAT = """
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
"""

# ARGV: now -> {now, id, info, last_seen, ...} of live workers
WORKERS = """
local now = clock(ARGV[1])
local out = {fnum(now)}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', R .. 'wexp', '(' .. fnum(now), '+inf')) do
  local info = redis.call('HGET', R .. 'w', id)
  local seen = redis.call('ZSCORE', R .. 'wseen', id)
  if info and seen then
    out[#out + 1] = info
    out[#out + 1] = seen
  end
end
return out
"""

# ARGV: now, limit -> how many ended jobs past their result_ttl were deleted
PRUNE = """
local now = clock(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', R .. 'expire', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local f = fields(id, 'queue', 'status', 'task', 'tenant')
  if f[1] then
    redis.call('HINCRBY', R .. 'counts', f[1] .. '\\0' .. f[2], -1)
    for _, idx in ipairs({'i:all', 'i:st:' .. f[2], 'i:tk:' .. f[3], 'i:q:' .. f[1],
                          'i:tn:' .. f[4]}) do
      redis.call('ZREM', R .. idx, id)
    end
  end
  redis.call('DEL', R .. 'j:' .. id, R .. 'h:' .. id)
  redis.call('ZREM', R .. 'expire', id)
end
return #due
"""

SCRIPTS: dict[str, str] = {
    "submit": SUBMIT,
    "claim": CLAIM,
    "renew": RENEW,
    "progress": PROGRESS,
    "finish": FINISH,
    "cancel": CANCEL,
    "reap": REAP,
    "reclaim": RECLAIM,
    "ready": READY,
    "heartbeat": HEARTBEAT,
    "workers": WORKERS,
    "prune": PRUNE,
}


def script(name: str) -> str:
    """The full source of one script: the shared prelude and its body."""
    return PRELUDE + SCRIPTS[name]
