-- Reading an ended job's record (see retire() in prelude.lua): what SUBMIT needs of the
-- prelude (a resubmitted id or an idempotency key's job may have ended), so that SUBMIT
-- can start with base.lua and this alone. Included by prelude.lua.
local G = __BUCKET_SECONDS__
local FIELDS = __ENDED_FIELDS__
local USUAL = __ENDED_DEFAULTS__
-- field name -> its place in a record: created_at 1, queue 2, status 3, FIELDS from 6 (a
-- literal: a Functions library runs no code at load, see scripts.library())
local SLOT = __ENDED_SLOTS__
local function bname(b) return string.format('%d', b) end
local SLICES, FULL = __BUCKET_SLICES__, __BUCKET_FULL__
local function slice_name(b, s) return bname(b) .. '.' .. s end
-- The buckets an ended job with this id is found in without a pointer (none: not a time id).
local function id_homes(id)
  local ms = string.match(id, '^%x%x%x%x%x%x%x%x%x%x%x%x')
  if not ms then return {} end
  local u = tonumber(ms, 16) / 1000 / G
  local b = math.floor(u)
  local s = math.floor((u - b) * SLICES)
  local nb, ns = b, s + 1
  if ns == SLICES then nb, ns = b + 1, 0 end
  return {bname(b), slice_name(b, s), slice_name(nb, ns)}
end
local function homed(id, name)
  for _, b in ipairs(id_homes(id)) do
    if b == name then return true end
  end
  return false
end
-- The bucket that holds an ended job's record, or nil.
local function locate(id)
  for _, b in ipairs(id_homes(id)) do
    if redis.call('HEXISTS', R .. 'f:' .. b, id) == 1 then return b end
  end
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
