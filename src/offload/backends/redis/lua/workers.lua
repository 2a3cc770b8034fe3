-- ARGV: now -> {now, id, info, last_seen, ...} of live workers
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
