-- ARGV: now, lease seconds ("" keeps the leases as they are), then job id, token...
-- -> {ids whose lease was lost, ids whose cancel was requested}
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
