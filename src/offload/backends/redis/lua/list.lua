-- ARGV: now (unused), top bucket ("+inf" or a bucket), the cursor's created_at ("" or a
-- number), limit, budget, then status, task, queue, tenant ("" or "=" + value)
-- -> {how, bucket, id, record, id, record...}: the ended jobs of the buckets of 'fb' read
-- newest first that match the filter and were created at or before the cursor: all those
-- created at the cursor's time (the caller breaks ties by id), then the limit + 1 newest
-- created before it (and any created at the same time as the last of those), unsorted. how: 'more'
-- (more than limit found before the cursor's time), 'budget' (budget records read; every
-- bucket from `bucket` up was read whole) or 'end' (no bucket left).
local top, upto = ARGV[2], tonumber(ARGV[3])
local limit, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local want = {status = opt(ARGV[6]), task = opt(ARGV[7]), queue = opt(ARGV[8]),
  tenant = opt(ARGV[9])}
local found, scanned, start, how, last, ties = {}, 0, 0, 'end', '', 0
-- A value a record holds as it is (not 0 for the usual value, nothing JSON escapes): a
-- record without it as a JSON string does not match, found without decoding it.
local plain = {}
for name, value in pairs(want) do
  if value ~= USUAL[name] and not string.find(value, '[%c"\\/]') then
    plain[#plain + 1] = '"' .. value .. '"'
  end
end
-- A record starts with created_at, queue (0: the usual one) and status: read from there
-- without decoding it when it can be (a queue name JSON escapes cannot).
local function head(raw)
  local at, st = string.match(raw, '^%["([^"]*)",0,"(%a+)"')
  if at then return at, USUAL.queue, st end
  return string.match(raw, '^%["([^"]*)","([^"\\]*)","(%a+)"')
end
local deep = want.task ~= nil or want.tenant ~= nil
local function keep(id, raw)
  for _, v in ipairs(plain) do
    if not string.find(raw, v, 1, true) then return end
  end
  local at, queue, status = head(raw)
  if not at or deep then
    local rec = cjson.decode(raw)
    at, queue, status = rec[1], rget(rec, 'queue'), rget(rec, 'status')
    if want.task and rget(rec, 'task') ~= want.task then return end
    if want.tenant and rget(rec, 'tenant') ~= want.tenant then return end
  end
  if (want.queue and queue ~= want.queue) or (want.status and status ~= want.status) then
    return
  end
  at = tonumber(at)
  if upto ~= nil and at > upto then return end
  found[#found + 1] = {at, id, raw}
  if at == upto then ties = ties + 1 end
end
while how == 'end' do
  local names = redis.call('ZREVRANGEBYSCORE', R .. 'fb', top, '-inf', 'LIMIT', start, 8)
  if #names == 0 then break end
  start = start + #names
  for _, name in ipairs(names) do
    local flat = redis.call('HGETALL', R .. 'f:' .. name)
    for i = 1, #flat, 2 do keep(flat[i], flat[i + 1]) end
    scanned = scanned + #flat / 2
    last = name
    if #found - ties > limit then how = 'more' break end
    if scanned >= budget then how = 'budget' break end
  end
end
-- The newest `cut` times without sorting the records (a sort of plain numbers is much cheaper
-- than one with a comparator); the caller sorts the few records returned.
local cut = ties + limit + 1
local least = -math.huge
if #found > cut then
  local ats = {}
  for i, item in ipairs(found) do ats[i] = item[1] end
  table.sort(ats)
  least = ats[#ats - cut + 1]
end
local out = {how, last}
for _, item in ipairs(found) do
  if item[1] >= least then
    out[#out + 1] = item[2]
    out[#out + 1] = item[3]
  end
end
return out
