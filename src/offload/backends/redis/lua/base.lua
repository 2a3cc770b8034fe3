-- What every script starts with, SUBMIT included (which needs nothing more: the whole
-- prelude's definitions cost a one-job submit 2-7 of its ~70 us in Redis, on every call).
-- KEYS[1] is the namespace root R.
local R = KEYS[1]
local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fnum(x) return string.format('%.17g', x) end
-- A number that can be a score or a time: not nil, not NaN, not infinite.
local function finite(x) return x ~= nil and x == x and x ~= math.huge and x ~= -math.huge end
-- An optional script string: "" is nil, else the value after its one-character marker.
local function opt(s) if s == nil or s == '' then return nil end return string.sub(s, 2) end
