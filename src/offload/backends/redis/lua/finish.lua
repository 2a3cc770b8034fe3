-- ARGV: now, cancel-instead detail, then ops (one per call): arg count, id, token, op, and
-- per op: finish -> target, reason, result, error, detail, jobs to submit with it ("" or "="
-- + a JSON array of SUBMIT's job arrays); retry -> retry_in, error, detail; release ->
-- nothing. Reply: per op 'lost', 'ok', 'invalid' (a bad retry delay), or for the successors
-- 'invalid\0<why>' or 'conflict\0<key>\0<job id>' (then nothing is written).
local now = clock(ARGV[1])
local instead = ARGV[2]
local window = __IDEMPOTENCY_WINDOW__
-- include: submit_lib.lua
-- Ended jobs: what leaves 'run', frees slots; written once per key (each moves to its
-- bucket as it ends: retire() in the prelude).
local ran, woken, moved = {}, {}, changes()
local function flush()
  bulk('ZREM', R .. 'run', ran)
  moved.flush()
  apply_submits()
  for queue, _ in pairs(woken) do redis.call('PUBLISH', R .. 'wake', queue) end
  ran, woken = {}, {}
end
local function finish(A)
  local id, op = A[1], A[3]
  if op == 'retry' and not (finite(tonumber(A[4])) and tonumber(A[4]) >= 0) then
    return 'invalid'  -- before any write: a bad delay must not half-apply the batch
  end
  local f, h = holds_all(id, A[2], now)
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
      if group[1] == 'invalid' then return 'invalid\0' .. group[2] end
      if group[1] == 'conflict' then return 'conflict\0' .. group[2] .. '\0' .. group[3] end
    end
    -- An ended job's last fields go straight into its record (retire() deletes its hash;
    -- %.17g is what redis.call writes a number as); any other target is written to the hash.
    local at = fnum(now)
    local over = {finished_at = at, updated_at = at, status = target, lease_until = false,
      result = result or false, error = error or false}
    if not ENDS[target] then
      local sets, dels = {}, {}
      for name, v in pairs(over) do
        if v then sets[#sets + 1] = name; sets[#sets + 1] = v else dels[#dels + 1] = name end
      end
      redis.call('HSET', k, unpack(sets))
      redis.call('HDEL', k, unpack(dels))
      over = nil
    end
    ran[#ran + 1] = id
    if release_slots(slots_for(f[12], f[13], f[14], f[15])) then woken[queue] = true end
    moved.add(id, queue, created, 'running', target)
    hist(id, now, 'running', target, reason, f[6], f[2], f[7], detail, over, h)
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
