#!lua
-- Tollgate wallets on Redis, version 1: what is not on a request's path
-- (admit.lua is). Amounts are nano-USD, passed as decimal strings.
--
-- KEYS, all under the account's hash tag tg:{a:<account>}:
--   1 w     HASH credit, debit, held, seed, s:<key> spent, h:<key> held
--   2 pend  HASH record key -> "amount key": applied to the wallet here,
--               not yet known to be in the ledger
--   3 holds HASH request id -> "amount key capped" (admit.lua's)
--   4 leases ZSET request id -> the hold's lease expiry (ms)
--   5 (apply only) r:<record key>: the record was applied (kept 30 days,
--               so a retry on any node after delivery applies nothing)
-- ARGV[1] op:
--   seed: 2 credit, 3 debit, then pairs (key id, spent), then "--", then
--     triples (record key, amount, key id) of records not yet in the
--     ledger (already counted in credit/debit). Returns 1, or 0 when the
--     wallet was seeded already (by another node: its seed stands).
--   apply: 2 record key, 3 amount (+ credit, - debit), 4 key id or "-".
--     Once per record key (2 when seen, 3 when the wallet is not seeded:
--     its seed will read the record from the ledger or the journal).
--   read: 2 a key id or "-"; holds whose lease ran out are released
--     first (their node died): {seeded, credit, debit, held, that key's
--     spend, n, then n triples (record key, amount, key id) pending, then
--     pairs (key id, spent) of every key}
--   correct: 2 credit delta, 3 debit delta, then pairs (key id, spent
--     delta), then "--", then record keys now in the ledger (unpended).
--   delivered: ARGV[2..] record keys now in the ledger (unpended).

local op = ARGV[1]
local K_W, K_PEND, K_HOLDS, K_LEASE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

-- Removes ARGV[from..] from the pending records, a thousand a command.
local function unpend(from)
  for i = from, #ARGV, 1000 do
    redis.call('HDEL', K_PEND, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
end

local function after_dashes(from)
  for i = from, #ARGV do
    if ARGV[i] == '--' then return i + 1 end
  end
  return #ARGV + 1
end

if op == 'seed' then
  if redis.call('HEXISTS', K_W, 'seed') == 1 then return 0 end
  redis.call('HSET', K_W, 'credit', ARGV[2], 'debit', ARGV[3], 'held', 0, 'seed', 1)
  local rest = after_dashes(4)
  for i = 4, rest - 2, 2 do
    redis.call('HSET', K_W, 's:' .. ARGV[i], ARGV[i + 1])
  end
  for i = rest, #ARGV - 2, 3 do
    redis.call('HSET', K_PEND, ARGV[i], ARGV[i + 1] .. ' ' .. ARGV[i + 2])
  end
  return 1
end

if op == 'apply' then
  if redis.call('SET', KEYS[5], 1, 'NX', 'PX', 2592000000) == false then return 2 end
  if redis.call('HEXISTS', K_W, 'seed') == 0 then return 3 end
  local amount = tonumber(ARGV[3])
  if amount >= 0 then
    redis.call('HINCRBY', K_W, 'credit', ARGV[3])
  else
    redis.call('HINCRBY', K_W, 'debit', string.sub(ARGV[3], 2))
    if ARGV[4] ~= '-' then redis.call('HINCRBY', K_W, 's:' .. ARGV[4], string.sub(ARGV[3], 2)) end
  end
  redis.call('HSET', K_PEND, ARGV[2], ARGV[3] .. ' ' .. ARGV[4])
  return 1
end

if op == 'read' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, hold_id in ipairs(redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', now, 'LIMIT', 0, 1000)) do
    local h = redis.call('HGET', K_HOLDS, hold_id)
    redis.call('ZREM', K_LEASE, hold_id)
    if h then
      local amount, key, capped = string.match(h, '^(%-?%d+) (%S+) ?(%d?)$')
      redis.call('HDEL', K_HOLDS, hold_id)
      redis.call('HINCRBY', K_W, 'held', -tonumber(amount))
      if capped ~= '0' and key ~= '-' then redis.call('HINCRBY', K_W, 'h:' .. key, -tonumber(amount)) end
    end
  end
  local w = redis.call('HMGET', K_W, 'seed', 'credit', 'debit', 'held', 's:' .. (ARGV[2] or '-'))
  local pend = redis.call('HGETALL', K_PEND)
  local out = {w[1] and 1 or 0, w[2] or '0', w[3] or '0', w[4] or '0', w[5] or '0', #pend / 2}
  for i = 1, #pend, 2 do
    local amount, key = string.match(pend[i + 1], '^(%S+) (%S+)$')
    out[#out + 1] = pend[i]
    out[#out + 1] = amount or '0'
    out[#out + 1] = key or '-'
  end
  local fields = redis.call('HGETALL', K_W)
  for i = 1, #fields, 2 do
    local key = string.match(fields[i], '^s:(%d+)$')
    if key then
      out[#out + 1] = key
      out[#out + 1] = fields[i + 1]
    end
  end
  return out
end

if op == 'correct' then
  if redis.call('HEXISTS', K_W, 'seed') == 0 then return 0 end
  redis.call('HINCRBY', K_W, 'credit', ARGV[2])
  redis.call('HINCRBY', K_W, 'debit', ARGV[3])
  local rest = after_dashes(4)
  for i = 4, rest - 2, 2 do
    redis.call('HINCRBY', K_W, 's:' .. ARGV[i], ARGV[i + 1])
  end
  unpend(rest)
  return 1
end

if op == 'delivered' then
  unpend(2)
  return 1
end

return redis.error_reply('tollgate wallet: unknown op ' .. tostring(op))
