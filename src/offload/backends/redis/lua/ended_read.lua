-- Reading an ended job's record (see retire() in prelude.lua): what SUBMIT needs of the
-- prelude (a resubmitted id or an idempotency key's job may have ended), so that SUBMIT
-- can start with base.lua and this alone. Included by prelude.lua.
local G = __BUCKET_SECONDS__
local FIELDS = __ENDED_FIELDS__
local USUAL = __ENDED_DEFAULTS__
local SLOT = {created_at = 1, queue = 2, status = 3}  -- field name -> its place in a record
for i, name in ipairs(FIELDS) do SLOT[name] = i + 5 end
local function bname(b) return string.format('%d', b) end
local function id_bucket(id)
  local ms = string.match(id, '^%x%x%x%x%x%x%x%x%x%x%x%x')
  if not ms then return nil end
  return bname(math.floor(tonumber(ms, 16) / 1000 / G))
end
-- The bucket that holds an ended job's record, or nil.
local function locate(id)
  local b = id_bucket(id)
  if b and redis.call('HEXISTS', R .. 'f:' .. b, id) == 1 then return b end
  local p = redis.call('HGET', R .. 'fp', id)
  if p and redis.call('HEXISTS', R .. 'f:' .. p, id) == 1 then return p end
  return nil
end
-- One value of a decoded record (nil when absent).
local function rget(rec, name)
  local v = rec[SLOT[name]]
  if type(v) == 'string' then return v end
  return USUAL[name]
end
-- A job's fields as HGETALL of its hash gives them (no history), live or ended; nil: none.
local function job_flat(id)
  local flat = redis.call('HGETALL', R .. 'j:' .. id)
  if #flat > 0 then return flat end
  local b = locate(id)
  if not b then return nil end
  local rec = cjson.decode(redis.call('HGET', R .. 'f:' .. b, id))
  local out = {'id', id, 'created_at', rec[1], 'queue', rget(rec, 'queue'), 'status', rec[3]}
  for _, name in ipairs(FIELDS) do
    local v = rget(rec, name)
    if v then out[#out + 1] = name; out[#out + 1] = v end
  end
  if type(rec[5]) == 'table' then
    for _, v in ipairs(rec[5]) do out[#out + 1] = v end
  end
  return out
end
