-- ARGV: now, idempotency window, then one JSON array per group (one group per submit call,
-- each all-or-none) of jobs, each an array of 18 strings (see RedisBackend._submit_groups).
-- Reply: now, then per group {'invalid', why}, {'conflict', key, job id} or {'ok', per job
-- {'new', status, run_at} or {'old', HGETALL...}}. Index and queue updates are collected and
-- sent once per key.
-- The 18 strings: id, task, queue, priority, delay, run_at, idempotency key, fingerprint,
-- concurrency key, tenant, args, kwargs, meta, result_ttl, cap, key_cap, rate, key_rate
-- (optional ones "" or "=" + value).
-- include: ended_read.lua
local now = clock(ARGV[1])
local window = tonumber(ARGV[2])
-- include: submit_lib.lua
local out = {fnum(now)}
for g = 3, #ARGV do out[#out + 1] = submit_group(cjson.decode(ARGV[g])) end
apply_submits()
return out
