-- ARGV: now, queues...  -> {innocent work ready (0/1), earliest due or '', now}. Jobs of
-- limited tasks count: a claim parks those whose slot is full (see CLAIM), so what is left in
-- ``c:`` can start or be deferred.
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
