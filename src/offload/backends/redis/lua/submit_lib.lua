-- The submit machinery as functions over the script's ``now`` and ``window`` (FINISH uses it
-- too: a workflow step's success submits what follows it in the same script run).
-- include: handoff.lua
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
  local a, c = string.find(raw, '\0', 1, true)
  local rest = string.sub(raw, c + 1)
  local d, e = string.find(rest, '\0', 1, true)
  if tonumber(string.sub(rest, e + 1)) <= now then return nil end
  local id = string.sub(raw, 1, a - 1)
  if redis.call('EXISTS', R .. 'j:' .. id) == 0 and not locate(id) then return nil end  -- pruned
  return {id, string.sub(rest, 1, d - 1)}
end
-- Store a job whose id is not stored (the bulk script looks ids up a chunk at a time);
-- returns its status and run_at.
local function store_new(job)
  local id, task, queue, prio, delay, run_at, key, _, ckey, tenant, args, kwargs, meta, ttl,
    cap, key_cap, rate, key_rate = unpack(job)
  run_at = opt(run_at)
  if run_at then run_at = tonumber(run_at) else run_at = now + math.max(0, tonumber(delay)) end
  local status = 'queued'
  if run_at > now then status = 'scheduled' end
  local f = {'id', id, 'task', task, 'queue', queue, 'priority', prio, 'status', status,
    'submitted_as', status, 'attempts', 0, 'losses', 0, 'token', 0, 'run_at', run_at,
    'created_at', now, 'updated_at', now, 'tenant', tenant, 'args', args, 'kwargs', kwargs,
    'meta', meta}
  key, ckey = opt(key), opt(ckey)
  if key then f[#f + 1] = 'idempotency_key'; f[#f + 1] = key end
  if ckey then f[#f + 1] = 'concurrency_key'; f[#f + 1] = ckey end
  if ttl ~= '' then f[#f + 1] = 'result_ttl'; f[#f + 1] = opt(ttl) end
  if cap ~= '' then f[#f + 1] = 'cap'; f[#f + 1] = opt(cap) end
  if key_cap ~= '' then f[#f + 1] = 'key_cap'; f[#f + 1] = opt(key_cap) end
  if rate ~= '' then f[#f + 1] = 'rate'; f[#f + 1] = opt(rate) end
  if key_rate ~= '' then f[#f + 1] = 'key_rate'; f[#f + 1] = opt(key_rate) end
  redis.call('HSET', R .. 'j:' .. id, unpack(f))
  local part = 'q:'
  if cap ~= '' or key_cap ~= '' or rate ~= '' or key_rate ~= '' then part = 'c:' end
  -- An idle worker may take it at once (see handoff.lua): then it is listed as running.
  local worker, lease, listed = nil, nil, status
  if status == 'queued' and part == 'q:' and not ready['q:' .. queue]
    and not ready['c:' .. queue] then
    worker, lease = handoff_target(queue, now)
  end
  if worker then
    hand_off(id, worker, lease, now)
    listed = 'running'
  end
  zadd(R .. 'i:all', now, id)
  zadd(R .. 'i:tk:' .. task, now, id)
  zadd(R .. 'i:q:' .. queue, now, id)
  zadd(R .. 'i:tn:' .. tenant, now, id)
  zadd(R .. 'i:st:' .. listed, now, id)
  local field = queue .. '\0' .. listed
  counts[field] = (counts[field] or 0) + 1
  if worker then
    return status, run_at
  elseif status == 'queued' then
    zadd(R .. part .. queue .. ':' .. prio, run_at, id)
    ready[part .. queue] = ready[part .. queue] or {queue = queue, part = part}
    ready[part .. queue][prio] = true
  else
    zadd(R .. 'sched', run_at, id)
  end
  return status, run_at
end
local function store(job)
  local id = job[1]
  -- a resubmitted id: the job as stored
  if redis.call('EXISTS', R .. 'j:' .. id) == 1 or locate(id) then
    return {'old', unpack(job_flat(id))}
  end
  -- The submit's own history entry is implied by created_at and submitted_as.
  local status, run_at = store_new(job)
  return {'new', status, fnum(run_at)}
end
-- Why a job's numbers cannot be stored (nil: they can). Checked before a group writes.
local function invalid(job)
  local prio = tonumber(job[4])
  if not finite(prio) or prio < __PRIORITY_MIN__ or prio > __PRIORITY_MAX__
    or job[4] ~= string.format('%d', prio) then
    return 'priority ' .. job[4] .. ' is not a whole number from __PRIORITY_MIN__ to __PRIORITY_MAX__'
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
      local ik = R .. 'idem:' .. job[10] .. '\0' .. key
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
        group[#group + 1] = {'old', unpack(job_flat(plan[i]))}
      else
        group[#group + 1] = store(job)
      end
    end
    for ik, entry in pairs(mine) do
      seen[ik] = entry
      redis.call('SET', ik, entry[1] .. '\0' .. entry[2] .. '\0' .. fnum(now + window),
        'PX', math.floor(window * 1000) + 60000)
    end
    return group
  end
end
-- Apply the collected updates: a queue that had nothing ready wakes idle workers (its
-- priorities' set was empty before iff it holds only the priorities just added to it).
local function apply_submits()
local parts = {['q:'] = 'qp:', ['c:'] = 'cp:'}
for key, t in pairs(zadds) do
  for i = 1, #t, 2000 do
    redis.call('ZADD', key, unpack(t, i, math.min(i + 1999, #t)))
  end
end
for field, n in pairs(counts) do redis.call('HINCRBY', R .. 'counts', field, n) end
for _, r in pairs(ready) do
  local qp, added = R .. parts[r.part] .. r.queue, 0
  for prio, _ in pairs(r) do
    if prio ~= 'queue' and prio ~= 'part' then
      added = added + redis.call('ZADD', qp, -tonumber(prio), prio)
    end
  end
  if added > 0 and redis.call('ZCARD', qp) == added then
    redis.call('PUBLISH', R .. 'wake', r.queue)
  end
end
zadds, counts, ready = {}, {}, {}
end
