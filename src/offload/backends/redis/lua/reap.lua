-- ARGV: now, limit, max_losses, cancel-instead detail
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
