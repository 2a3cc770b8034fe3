-- ARGV: now (unused), top (the highest score of 'fb' to read: "+inf", a score, or "(" and a
-- score), the cursor's created_at ("" or a number), limit, budget, then status, task, queue,
-- tenant ("" or "=" + value), then the second whose own bucket the call before read ("": none),
-- then the cursor's id ("": none at the cursor's time is below the cursor)
-- -> {how, score, scanned, id, record, id, record...}: the ended jobs of the buckets of 'fb'
-- read newest first (a slice's bucket 'B.S' with its second's own bucket B, which may hold
-- records of any slice of B) that match the filter and come after the cursor in the listing
-- order (created_at, then id, both descending; ids compared byte by byte, as Python compares
-- them, whatever the server's locale): of those, the limit + 1 first in that order, unsorted
-- (the caller sorts the few records returned). score: that of the last bucket read, whose
-- start is the frontier: every record created at or after it was read (some found may be
-- older). how: 'more' (more than limit found at or after the frontier), 'budget' (budget
-- records read: the next call does not read that second's own bucket again) or 'end' (no
-- bucket left). scanned: records read.
local top, upto, after = ARGV[2], tonumber(ARGV[3]), ARGV[11] or ''
local limit, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local want = {status = opt(ARGV[6]), task = opt(ARGV[7]), queue = opt(ARGV[8]),
  tenant = opt(ARGV[9])}
-- found: the matching records' created_at, id and record (three lists, no table each)
local fat, fid, fraw, scanned, start, how, last = {}, {}, {}, 0, 0, 'end', ''
-- Lua compares strings with strcoll (Redis sets LC_COLLATE from its environment): ids are
-- compared byte by byte, with '<' only when it orders every probe as bytes do (C and C.UTF-8
-- locales), with a loop over bytes otherwise.
local probe = ' !"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`' ..
  'abcdefghijklmnopqrstuvwxyz{|}~\127\128\255'
local bytewise = ('a-b' < 'ab') and ('ab' < 'ab-') and ('A' < 'a\0')
for i = 1, #probe - 1 do
  bytewise = bytewise and string.sub(probe, i, i) < string.sub(probe, i + 1, i + 1)
end
local function below(a, b)  -- a before b in byte order
  if bytewise then return a < b end
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
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
  if upto ~= nil and (at > upto or (at == upto and not below(id, after))) then return end
  local n = #fat + 1
  fat[n], fid[n], fraw[n] = at, id, raw
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
-- Found records created at or after `lo` (a time over G).
local function above(lo)
  local n = 0
  for _, at in ipairs(fat) do
    if at / G >= lo then n = n + 1 end
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
-- The least of the `need` greatest ids, without sorting them all: a list of the greatest so
-- far, least first (few enter it once it is full, the ids coming in hash order).
local function fence_of(ids, need)
  local top = {}
  for _, id in ipairs(ids) do
    if #top < need or below(top[1], id) then
      local lo, hi = 1, #top + 1
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if below(top[mid], id) then lo = mid + 1 else hi = mid end
      end
      table.insert(top, lo, id)
      if #top > need then table.remove(top, 1) end
    end
  end
  return top[1]
end
-- The limit + 1 first records without sorting them all: those created after the (limit + 1)th
-- newest time `least` (found without a sort when at least limit + 1 share the newest time, else
-- by a sort of plain numbers, much cheaper than one with a comparator), then of those created
-- at `least` the ones of the greatest ids.
local out = {how, last, scanned}
local cut = limit + 1
local least, fence = -math.huge, nil
if #fat > cut then
  local newest, at_newest = -math.huge, 0
  for _, at in ipairs(fat) do
    if at > newest then
      newest, at_newest = at, 1
    elseif at == newest then
      at_newest = at_newest + 1
    end
  end
  if at_newest >= cut then
    least = newest
  else
    local ats = {}
    for i, at in ipairs(fat) do ats[i] = at end
    table.sort(ats)
    least = ats[#ats - cut + 1]
  end
  local ids, need = {}, cut
  for i, at in ipairs(fat) do
    if at > least then need = need - 1 elseif at == least then ids[#ids + 1] = fid[i] end
  end
  if #ids > need then fence = fence_of(ids, need) end
end
for i, at in ipairs(fat) do
  if at > least or (at == least and (fence == nil or not below(fid[i], fence))) then
    out[#out + 1] = fid[i]
    out[#out + 1] = fraw[i]
  end
end
return out
