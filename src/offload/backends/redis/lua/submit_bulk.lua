-- SUBMIT_BULK: one chunk of one large submit call (offload.backends.redis.bulk). It stores what
-- SUBMIT stores for the same rows (submit_lib's checks, idempotency lookups and collected index
-- updates), but looks up a chunk's ids in a few commands instead of three per job, checks each
-- distinct set of numbers once, and can refuse the chunk when an earlier chunk of the same
-- call was refused.
-- ARGV: now, idempotency window, the call's gate (a key suffix), the chunk's rows (SUBMIT's
-- 18-string rows, one JSON array), then for a call's first chunk the idempotency keys of its
-- later chunks as one JSON array of {key, tenant, fingerprint} (checked before anything is
-- written).
-- Reply: now, then {'ok', the jobs' marks (see pass 2), HGETALL... of each job already stored},
-- {'invalid', why}, {'conflict', key, job id} or {'gated'} (an earlier chunk was refused:
-- this one wrote nothing). A refused chunk writes nothing and closes the gate for the chunks
-- after it (a key that expires in a minute).
local now = clock(ARGV[1])
local window = tonumber(ARGV[2])
-- include: submit_lib.lua
local gate = R .. 'bulkgate:' .. ARGV[3]
if redis.call('EXISTS', gate) == 1 then return {fnum(now), {'gated'}} end
local jobs = cjson.decode(ARGV[4])
local function refuse(why)
  redis.call('SET', gate, '1', 'PX', 60000)
  return {fnum(now), why}
end
-- The indexes of the jobs whose id is stored already (live or ended): a few commands for the
-- chunk, then one per job only for a chunk that has some (a repeated call).
local function stored_ids()
  local found, keys, ids, by_bucket, bucket_of, exists = {}, {}, {}, {}, {}, {}
  for i, job in ipairs(jobs) do
    local id = job[1]
    keys[i], ids[i] = R .. 'j:' .. id, id
    local ms = string.sub(id, 1, 12)  -- ids made the same millisecond share their buckets
    local homes = bucket_of[ms]
    if homes == nil then
      homes = {}  -- only the buckets that exist (a chunk of fresh ids usually has none)
      for _, b in ipairs(id_homes(id)) do
        if exists[b] == nil then exists[b] = redis.call('EXISTS', R .. 'f:' .. b) == 1 end
        if exists[b] then homes[#homes + 1] = b end
      end
      bucket_of[ms] = homes
    end
    for _, b in ipairs(homes) do
      local t = by_bucket[b]
      if not t then t = {}; by_bucket[b] = t end
      t[#t + 1] = i
    end
  end
  local live = 0
  for i = 1, #keys, 1000 do
    local first = keys[i]
    live = live + redis.call('EXISTS', first, unpack(keys, i + 1, math.min(i + 999, #keys)))
  end
  if live > 0 then
    for i, k in ipairs(keys) do
      if redis.call('EXISTS', k) == 1 then found[i] = true end
    end
  end
  for b, idx in pairs(by_bucket) do
    for i = 1, #idx, 1000 do
      local part = {}
      for j = i, math.min(i + 999, #idx) do part[#part + 1] = ids[idx[j]] end
      local got = redis.call('HMGET', R .. 'f:' .. b, unpack(part))
      for j, v in ipairs(got) do if v then found[idx[i + j - 1]] = true end end
    end
  end
  if redis.call('EXISTS', R .. 'fp') == 1 then
    for i, id in ipairs(ids) do
      if not found[i] and locate(id) then found[i] = true end
    end
  end
  return found
end
-- submit_lib's invalid(), once per distinct set of numbers (a job with the same numbers as the
-- one checked before it, the usual case, is not even looked up).
local valid, last = {}, nil
local function checked(job)
  if last and job[4] == last[4] and job[5] == last[5] and job[6] == last[6]
    and job[14] == last[14] and job[15] == last[15] and job[16] == last[16]
    and job[17] == last[17] and job[18] == last[18] then
    return nil
  end
  local sig = table.concat(job, '\0', 4, 6) .. '\0' .. table.concat(job, '\0', 14, 18)
  local why = nil
  if not valid[sig] then why = invalid(job) end
  if not why then valid[sig] = true; last = job end
  return why
end
-- submit_lib's store_new() for this script's many new jobs: the same writes (a test compares
-- every key stored one way and the other) made cheaper. The numbers most jobs share are
-- formatted once (a Lua number given to redis.call is formatted with %.17g each time, as fnum
-- does), the index sets' tables are looked up once per name, and a job without optional
-- fields is one HSET call without a field table. Returns the job's reply mark: q or s (queued
-- or scheduled), then its run_at unless it is now.
local now_s = fnum(now)
local named = {}
local function set_of(key)
  local t = named[key]
  if not t then
    t = zadds[key]
    if not t then t = {}; zadds[key] = t end
    named[key] = t
  end
  return t
end
local function add(t, score, member)
  local n = #t
  t[n + 1] = score
  t[n + 2] = member
end
local all_set, sched_set = set_of(R .. 'i:all'), set_of(R .. 'sched')
local function mark_new(job)
  local id, task, queue, prio, delay, run_at, key, _, ckey, tenant, args, kwargs, meta, ttl,
    cap, key_cap, rate, key_rate = unpack(job)
  if run_at ~= '' then
    run_at = tonumber(string.sub(run_at, 2))
  elseif delay == '0.0' then
    run_at = now
  else
    run_at = now + math.max(0, tonumber(delay))
  end
  local run_s, status = now_s, 'queued'
  if run_at ~= now then run_s = fnum(run_at) end
  if run_at > now then status = 'scheduled' end
  local limited = cap ~= '' or key_cap ~= '' or rate ~= '' or key_rate ~= ''
  if key == '' and ckey == '' and ttl == '' and not limited then
    redis.call('HSET', R .. 'j:' .. id, 'id', id, 'task', task, 'queue', queue,
      'priority', prio, 'status', status, 'submitted_as', status, 'attempts', '0',
      'losses', '0', 'token', '0', 'run_at', run_s, 'created_at', now_s, 'updated_at', now_s,
      'tenant', tenant, 'args', args, 'kwargs', kwargs, 'meta', meta)
  else
    local f = {'id', id, 'task', task, 'queue', queue, 'priority', prio, 'status', status,
      'submitted_as', status, 'attempts', '0', 'losses', '0', 'token', '0', 'run_at', run_s,
      'created_at', now_s, 'updated_at', now_s, 'tenant', tenant, 'args', args,
      'kwargs', kwargs, 'meta', meta}
    if key ~= '' then f[#f + 1] = 'idempotency_key'; f[#f + 1] = opt(key) end
    if ckey ~= '' then f[#f + 1] = 'concurrency_key'; f[#f + 1] = opt(ckey) end
    if ttl ~= '' then f[#f + 1] = 'result_ttl'; f[#f + 1] = opt(ttl) end
    if cap ~= '' then f[#f + 1] = 'cap'; f[#f + 1] = opt(cap) end
    if key_cap ~= '' then f[#f + 1] = 'key_cap'; f[#f + 1] = opt(key_cap) end
    if rate ~= '' then f[#f + 1] = 'rate'; f[#f + 1] = opt(rate) end
    if key_rate ~= '' then f[#f + 1] = 'key_rate'; f[#f + 1] = opt(key_rate) end
    redis.call('HSET', R .. 'j:' .. id, unpack(f))
  end
  add(all_set, now_s, id)
  add(set_of(R .. 'i:tk:' .. task), now_s, id)
  add(set_of(R .. 'i:q:' .. queue), now_s, id)
  add(set_of(R .. 'i:tn:' .. tenant), now_s, id)
  add(set_of(R .. 'i:st:' .. status), now_s, id)
  local field = queue .. '\0' .. status
  counts[field] = (counts[field] or 0) + 1
  local mark = 's'
  if status == 'queued' then
    mark = 'q'
    local part = limited and 'c:' or 'q:'
    add(set_of(R .. part .. queue .. ':' .. prio), run_s, id)
    local r = ready[part .. queue]
    if not r then r = {queue = queue, part = part}; ready[part .. queue] = r end
    r[prio] = true
  else
    add(sched_set, run_s, id)
  end
  if run_at == now then return mark end
  return mark .. run_s
end
-- Pass 1: numbers, then idempotency keys (this chunk's, then the later chunks'); no writes.
for _, job in ipairs(jobs) do
  local why = checked(job)
  if why then return refuse({'invalid', 'job ' .. job[1] .. ': ' .. why}) end
end
local mine, plan = {}, {}
for i, job in ipairs(jobs) do
  local key = opt(job[7])
  if key then
    local ik = R .. 'idem:' .. job[10] .. '\0' .. key
    local entry = mine[ik] or lookup(ik)
    if entry and entry[2] ~= job[8] then return refuse({'conflict', key, entry[1]}) end
    if entry then plan[i] = entry[1] else mine[ik] = {job[1], job[8]} end
  end
end
if ARGV[5] then
  for _, later in ipairs(cjson.decode(ARGV[5])) do
    local ik = R .. 'idem:' .. later[2] .. '\0' .. later[1]
    local entry = mine[ik] or lookup(ik)
    if entry and entry[2] ~= later[3] then return refuse({'conflict', later[1], entry[1]}) end
  end
end
-- Pass 2: store; a repeated key names the job stored first, a repeated id the job as stored.
-- The reply packs a new job as one mark, q or s (queued, scheduled) and its run_at unless
-- it is now; a job already stored is an o, its fields in the items after the marks.
local found, written = stored_ids(), {}
local marks, group = {}, {'ok', ''}
for i, job in ipairs(jobs) do
  local item
  if plan[i] then
    item = {'old', unpack(job_flat(plan[i]))}
  elseif found[i] or written[job[1]] then
    item = store(job)
  else
    written[job[1]] = true
    marks[i] = mark_new(job)
  end
  if item then
    if item[1] == 'new' then
      marks[i] = (item[2] == 'queued' and 'q' or 's') .. item[3]
    else
      marks[i] = 'o'
      table.remove(item, 1)
      group[#group + 1] = item
    end
  end
end
group[2] = table.concat(marks, ',')
for ik, entry in pairs(mine) do
  redis.call('SET', ik, entry[1] .. '\0' .. entry[2] .. '\0' .. fnum(now + window),
    'PX', math.floor(window * 1000) + 60000)
end
apply_submits()
return {fnum(now), group}
