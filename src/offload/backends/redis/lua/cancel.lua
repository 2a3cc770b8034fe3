-- ARGV: now, job id -> {'missing'}, {'invalid', status} or {'ok', the job's fields (job_flat)}
local now = clock(ARGV[1])
local id = ARGV[2]
local k = R .. 'j:' .. id
local f = fields(id, 'status', 'queue', 'priority', 'created_at', 'attempts', 'token',
  'worker_id')
local status = f[1]
if not status then
  local b = locate(id)
  if not b then return {'missing'} end
  return {'invalid', rget(cjson.decode(redis.call('HGET', R .. 'f:' .. b, id)), 'status')}
end
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
  local err = move(id, f[2], f[4], status, 'cancelled')
  if err then return err end
  hist(id, now, status, 'cancelled', 'cancelled', f[5], f[6], f[7], nil)
end
return {'ok', unpack(job_flat(id))}
