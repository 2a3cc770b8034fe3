-- ARGV: now, job id, token, fraction ("" or "=" + value), message ("" or "=" + text)
-- -> 'lost' or 'ok'
local now = clock(ARGV[1])
local id = ARGV[2]
if not holds(id, ARGV[3], now) then return 'lost' end
local k = R .. 'j:' .. id
local fraction, message = opt(ARGV[4]), opt(ARGV[5])
redis.call('HDEL', k, 'progress', 'progress_message')
redis.call('HSET', k, 'updated_at', now)
if fraction then redis.call('HSET', k, 'progress', tonumber(fraction)) end
if message then redis.call('HSET', k, 'progress_message', message) end
return 'ok'
