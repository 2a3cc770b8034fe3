-- ARGV: now, grace, limit -> how many leases of dead workers' jobs were ended (then run REAP)
-- It looks at the `limit` running jobs whose leases end first: a dead worker's leases are no
-- longer renewed, so they come first among the leases of live workers.
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
