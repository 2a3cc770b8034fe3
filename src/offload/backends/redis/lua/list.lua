-- ARGV: now (unused), top (the highest score of 'fb' to read: "+inf", a score, or "(" and a
-- score), the cursor's created_at ("" or a number), limit, budget, then status, task, queue,
-- tenant ("" or "=" + value), then the second whose own bucket the call before read ("": none)
-- -> {how, score, scanned, id, record, id, record...}: the ended jobs of the buckets of 'fb'
-- read newest first (a slice's bucket 'B.S' with its second's own bucket B, which may hold
-- records of any slice of B) that match the filter and were created at or before the
-- cursor: all those created at the cursor's time (the caller breaks ties by id), then the
-- limit + 1 newest created before it (and any created at the same time as the last of
-- those), unsorted, or all it found when it stops for its budget (the next call does not
-- read that second's own bucket again); some may be older than the frontier. score: that
-- of the last bucket read, whose start is the frontier: every record created at or after it
-- was read. how: 'more' (more than limit found at or after the frontier, before the cursor's
-- time), 'budget' (budget records read) or 'end' (no bucket left). scanned: records read.
local top, upto = ARGV[2], tonumber(ARGV[3])
local limit, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local want = {status = opt(ARGV[6]), task = opt(ARGV[7]), queue = opt(ARGV[8]),
  tenant = opt(ARGV[9])}
local found, scanned, start, how, last = {}, 0, 0, 'end', ''
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
end
local read = {}  -- a second's own bucket is read with its first slice read
if ARGV[10] ~= '' then read[ARGV[10]] = true end
local function scan(name)
  if read[name] then return end
  read[name] = true
  local flat = redis.call('HGETALL', R .. 'f:' .. name)
  for i = 1, #flat, 2 do keep(flat[i], flat[i + 1]) end
  scanned = scanned + #flat / 2
end
-- Found records created at or after `lo` (a time over G), those at the cursor's time apart.
local function above(lo)
  local n = 0
  for _, item in ipairs(found) do
    if item[1] / G >= lo and item[1] ~= upto then n = n + 1 end
  end
  return n
end
while how == 'end' do
  local names = redis.call('ZREVRANGEBYSCORE', R .. 'fb', top, '-inf', 'WITHSCORES', 'LIMIT',
    start, 8)
  if #names == 0 then break end
  start = start + #names / 2
  for i = 1, #names, 2 do
    local score = tonumber(names[i + 1])
    local b = math.floor(score)
    local lo = b
    if score ~= b then
      scan(bname(b))
      lo = b + math.floor((score - b) * 2 * SLICES - 1 + 0.5) / SLICES
    end
    scan(names[i])
    last = names[i + 1]
    if above(lo) > limit then how = 'more' break end
    if scanned >= budget then how = 'budget' break end
  end
end
-- The newest records without sorting them (a sort of plain numbers is much cheaper than one
-- with a comparator): all at the cursor's time and the limit + 1 newest before it; the caller
-- sorts the few records returned.
local ties = 0
for _, item in ipairs(found) do
  if item[1] == upto then ties = ties + 1 end
end
local cut = ties + limit + 1
local least = -math.huge
if #found > cut and how ~= 'budget' then
  local ats = {}
  for i, item in ipairs(found) do ats[i] = item[1] end
  table.sort(ats)
  least = ats[#ats - cut + 1]
end
local out = {how, last, scanned}
for _, item in ipairs(found) do
  if item[1] >= least then
    out[#out + 1] = item[2]
    out[#out + 1] = item[3]
  end
end
return out
