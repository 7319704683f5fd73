//! The Lua scripts Redis runs atomically for kala: a batch with its
//! guards, and a round of lease changes.
//!
//! Owns: the scripts' text. Must not: call Redis.

/// A whole batch in one script, so that its guards (a lease's fence, the
/// stored bytes of each job it changes) and its writes are one atomic
/// step. ARGV: the number of guards, each guard (`fence` leases-key
/// partition node token now | `cas` key field expected), then the number
/// of commands, each as its argument count and arguments. `KALA_CHANGE`
/// seq-key changes-key channel now id appends a change (sequence from
/// `INCR`, so changes are gap-free and in commit order) and publishes a
/// wake-up. `KALA_DROP_NOTICES` job-set hash pending done jobs job
/// deletes a job's notices. Returns 1, or {0, kind, guard index} when a guard failed and
/// nothing was written.
pub(crate) const BATCH_LUA: &str = r#"
local i = 1
local nguards = tonumber(ARGV[i]); i = i + 1
for g = 1, nguards do
  local kind = ARGV[i]
  if kind == 'fence' then
    local v = redis.call('HGET', ARGV[i+1], ARGV[i+2])
    local ok = false
    if v then
      local t, e, o = string.match(v, '^(%d+)|(%d+)|(.*)$')
      ok = (o == ARGV[i+3]) and (t == ARGV[i+4]) and (e > ARGV[i+5])
    end
    if not ok then return {0, 'fence', g} end
    i = i + 6
  else
    local v = redis.call('HGET', ARGV[i+1], ARGV[i+2])
    if (v or '') ~= ARGV[i+3] then return {0, 'cas', g} end
    i = i + 4
  end
end
local ncmds = tonumber(ARGV[i]); i = i + 1
local published = {}
for c = 1, ncmds do
  local argc = tonumber(ARGV[i]); i = i + 1
  if ARGV[i] == 'KALA_CHANGE' then
    local seq = redis.call('INCR', ARGV[i+1])
    redis.call('ZADD', ARGV[i+2], seq, seq .. '|' .. ARGV[i+4] .. '|' .. ARGV[i+5])
    published[ARGV[i+3]] = true
  elseif ARGV[i] == 'KALA_DROP_NOTICES' then
    local ids = redis.call('SMEMBERS', ARGV[i+1])
    for _, id in ipairs(ids) do
      redis.call('HDEL', ARGV[i+2], id)
      redis.call('ZREM', ARGV[i+3], id)
      redis.call('ZREM', ARGV[i+4], id)
    end
    redis.call('DEL', ARGV[i+1])
    redis.call('SREM', ARGV[i+5], ARGV[i+6])
  else
    redis.call(unpack(ARGV, i, i + argc - 1))
  end
  i = i + argc
end
for ch, _ in pairs(published) do redis.call('PUBLISH', ch, '') end
return 1
"#;

/// One lease round. KEYS[1] leases. ARGV: node, now (padded), until
/// (padded), number of partitions to take, those, then those to release.
/// Returns the whole hash.
pub(crate) const LEASE_LUA: &str = r#"
local node, now, untl = ARGV[1], ARGV[2], ARGV[3]
local ntake = tonumber(ARGV[4])
local zero = string.rep('0', 31)
for k = 1, ntake do
  local p = ARGV[4 + k]
  local v = redis.call('HGET', KEYS[1], p)
  if not v then
    redis.call('HSET', KEYS[1], p, '1|' .. untl .. '|' .. node)
  else
    local t, e, o = string.match(v, '^(%d+)|(%d+)|(.*)$')
    if o == node then
      redis.call('HSET', KEYS[1], p, t .. '|' .. untl .. '|' .. node)
    elseif e <= now then
      redis.call('HSET', KEYS[1], p, (tonumber(t) + 1) .. '|' .. untl .. '|' .. node)
    end
  end
end
for k = 5 + ntake, #ARGV do
  local p = ARGV[k]
  local v = redis.call('HGET', KEYS[1], p)
  if v then
    local t, e, o = string.match(v, '^(%d+)|(%d+)|(.*)$')
    if o == node then redis.call('HSET', KEYS[1], p, t .. '|' .. zero .. '|' .. node) end
  end
end
return redis.call('HGETALL', KEYS[1])
"#;
