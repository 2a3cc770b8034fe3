-- One-round-trip pickup: an idle worker registers (CLAIM with a registration time), and a
-- submit that makes a job ready for one of its queues claims that job for it at once, exactly
-- as CLAIM would (token, attempts, lease from the script's clock, worker, history, listing
-- indexes), and pushes the job to the worker's list hand:<worker>, which the worker blocks on
-- (BLMOVE into got:<worker>, so that a reply lost on the way is still found).
-- Keys: idle:<queue> (zset: worker -> registration deadline, the server's TIME even under a
-- test clock), idlew:<worker> (lease seconds, then its queues, NUL-separated; expires with
-- the registration). A worker's next CLAIM ends its registration and takes back whatever was
-- handed to it and not yet received (take_handed), with its lease renewed from that moment.
-- A worker killed while registered may be handed one job: it runs under that worker's id and
-- is reclaimed like any job of a dead worker (RECLAIM once its heartbeat lapses, then REAP).
-- Whether `key` can be a hand-off list (foreign data of another type is left alone).
local function list_or_none(key)
  local t = redis.call('TYPE', key)['ok']
  return t == 'list' or t == 'none'
end
local function server_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
-- End a worker's registration; its lease seconds, or nil if it had none.
local function unregister(worker)
  local info = redis.call('GET', R .. 'idlew:' .. worker)
  if not info then return nil end
  redis.call('DEL', R .. 'idlew:' .. worker)
  local lease = nil
  for part in string.gmatch(info, '([^%z]+)') do
    if lease == nil then lease = tonumber(part)
    else redis.call('ZREM', R .. 'idle:' .. part, worker) end
  end
  return lease
end
local function register(worker, lease, seconds, queues)
  local deadline = server_time() + seconds
  for _, queue in ipairs(queues) do
    redis.call('ZADD', R .. 'idle:' .. queue, deadline, worker)
  end
  redis.call('SET', R .. 'idlew:' .. worker, fnum(lease) .. '\0' .. table.concat(queues, '\0'),
    'PX', math.ceil(seconds * 1000) + 1000)
end
-- A registered idle worker for `queue` whose registration is fresh, unregistered now; or nil.
local function idle_worker(queue)
  local key = R .. 'idle:' .. queue
  if redis.call('EXISTS', key) == 0 then return nil end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fnum(server_time()))
  local worker = redis.call('ZRANGE', key, -1, -1)[1]  -- the latest to register
  if not worker then return nil end
  local lease = unregister(worker)
  if not lease then
    redis.call('ZREM', key, worker)
    return nil
  end
  if not list_or_none(R .. 'hand:' .. worker) then return nil end
  return worker, lease
end
-- Can a new job of `queue` (an innocent one: no cap, rate or suspect) skip the queue? Only if
-- CLAIM would pick it first: nothing else of the queue ready (innocent, limited or suspect),
-- and no scheduled job due (CLAIM promotes those first).
local function handoff_target(queue, now)
  if redis.call('EXISTS', R .. 'idle:' .. queue) == 0 then return nil end
  if redis.call('EXISTS', R .. 'qp:' .. queue, R .. 'cp:' .. queue, R .. 's:' .. queue) > 0 then
    return nil
  end
  if #redis.call('ZRANGEBYSCORE', R .. 'sched', '-inf', now, 'LIMIT', 0, 1) > 0 then return nil end
  return idle_worker(queue)
end
-- Claim a job just stored as queued (token 0, attempts 0, never run) for `worker`, and hand it
-- over. The caller counts and indexes it as running (not queued) and leaves it out of the queue.
local function hand_off(id, worker, lease, now)
  local k = R .. 'j:' .. id
  local until_ = now + lease
  redis.call('HSET', k, 'token', 1, 'attempts', 1, 'status', 'running', 'worker_id', worker,
    'lease_until', until_, 'started_at', now, 'updated_at', now)
  redis.call('ZADD', R .. 'run', until_, id)
  redis.call('RPUSH', R .. 'h:' .. id,
    cjson.encode({fnum(now), 'queued', 'running', 'claimed', 1, 1, worker, false}))
  local hk = R .. 'hand:' .. worker
  redis.call('RPUSH', hk, cjson.encode(redis.call('HGETALL', k)))
  redis.call('PEXPIRE', hk, math.ceil((2 * lease + 60) * 1000))
end
-- CLAIM's side: end the worker's registration and take back what was handed to it and not
-- yet received (or received and not yet launched: the worker drops those it knows), each
-- lease renewed from now (the worker tracks it from this claim). -> HGETALLs.
local function take_handed(worker, now, lease)
  unregister(worker)
  local out = {}
  for _, key in ipairs({R .. 'got:' .. worker, R .. 'hand:' .. worker}) do
    local items = {}
    if list_or_none(key) then items = redis.call('LRANGE', key, 0, -1) end
    for _, raw in ipairs(items) do
      local flat = cjson.decode(raw)
      local id, token
      for i = 1, #flat, 2 do
        if flat[i] == 'id' then id = flat[i + 1] elseif flat[i] == 'token' then token = flat[i + 1] end
      end
      local k = R .. 'j:' .. id
      local f = redis.call('HMGET', k, 'status', 'worker_id', 'token')
      if f[1] == 'running' and f[2] == worker and f[3] == token then
        redis.call('HSET', k, 'lease_until', now + lease)
        redis.call('ZADD', R .. 'run', now + lease, id)
        out[#out + 1] = redis.call('HGETALL', k)
      end
    end
    if #items > 0 then redis.call('DEL', key) end
  end
  return out
end
