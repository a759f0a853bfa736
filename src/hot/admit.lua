#!lua name=tollgate_admit_6
-- Tollgate's admit and settle on Redis, version 6: a Redis Function
-- library (`FCALL tollgate_admit_6`), its version in its names, so nodes
-- of two releases run side by side during an upgrade (a change to this
-- text takes a new version: a test holds the text to its name). One call
-- takes a request from every limit that applies and holds its worst-case
-- cost against the wallet and the key's spend cap, or takes from none;
-- another settles it: the hold becomes the charge, the limits are given
-- back or corrected. Same semantics as src/limits and src/billing (see
-- there); time is Redis TIME. Only the limits in force are touched, and
-- the standings after an admit come from what its checks read: a call
-- costs Redis a few commands, not one per limit there could be.
--
-- KEYS, all under the account's hash tag tg:{a:<account>}: first the
-- account's wallet, then six for each call that has limits (admit,
-- standing, finish, cancel; none for hold and charge), in call order:
--   1 w                 HASH the wallet: credit, debit, held (nano-USD),
--                       seed (present once seeded), s:<key> key spent,
--                       h:<key> key held (keys with a cap)
--   2 holds             HASH request id -> "amount key capped(0/1)"
--   3 leases            ZSET request id -> hold lease expiry (ms)
--   4 pend              HASH record key -> "amount key": applied here,
--                       not yet known to be in the ledger (wallet.lua)
--   +1 k:<key>:inflight  ZSET request id -> lease expiry (ms)
--   +2 k:<key>:rpm       ZSET request id -> time taken (ms)
--   +3 k:<key>:c:<class> ZSET request id -> time taken (ms)
--   +4 h:<group>         ZSET request id -> time taken (ms)
--   +5 d:<local day>     counter of the day's messages
--   +6 k:<key>:tpm       HASH level (token-ms), at (ms), pm (tokens/min)
-- ARGV[1] op: admit | standing | finish | cancel | hold | charge | many;
-- ARGV[2] the request id (many: the number of calls, see there).
-- admit/standing: 3 concurrent, 4 rpm, 5 rpm_class, 6 rph, 7 daily,
--   8 input_tpm (each -1 when no limit), 9 input estimate, 10 ms until
--   local midnight (the day key lives an hour longer), 11 lease (ms),
--   12 the hold (-1: none), 13 key id, 14 key cap (-1: none), 15 hold
--   lease (ms).
-- finish/cancel: 3 billed (0/1), 4 day taken (0/1), 5 tokens taken,
--   6 the provider's input count (-1: none), 7 held (0/1), 8 charged,
--   9 key id, 10 the charge's record key, 11 in flight taken (0/1),
--   12 rpm, 13 class, 14 hourly windows taken (0/1 each), 15 the hold
--   as admit kept it ("amount key capped"; read from Redis when absent).
-- hold (an admit with a hold and no limit): 3 the hold, 4 key id, 5 key
--   cap (-1: none), 6 hold lease (ms).
-- charge (the end of a hold's call): 3 charged (0: none, as a cancel),
--   4 key id, 5 the hold as hold kept it. The record is <id>:charge.
-- Returns admit and hold: {0, kind, limit, retry_after_ms (-1: never)} or
--   {0, 'wallet'|'spend_cap', available, budget} or {2} (the wallet is
--   not seeded: seed it from the ledger, then ask again) or
--   {1, now, standings..., available}; standing: {1, now, standings...};
--   finish/cancel/charge: 1 if the request was still live, else 0; many:
--   each call's answer, in order.
-- standings: in-flight count, rpm count, rpm reset, class count, class
-- reset, rph count, rph reset, day used, bucket tokens, bucket reset
-- (0 for a limit not in force).

-- A Redis Function library: Redis runs this file once, when it is loaded
-- (at start, and again after Redis lost it), so the helpers below are
-- made once, not at every call as a script's body is. Each call sets the
-- state its helpers read (its time, its keys, where its arguments start);
-- Redis runs one call at a time.

local MIN, HOUR, TM = 60000, 3600000, 60000
local KEYS, ARGV, now = {}, {}, 0
-- The account's wallet keys, and the current call's limit keys.
local K_W, K_HOLDS, K_LEASE, K_PEND, K_IN, K_RPM, K_CLS, K_RPH, K_DAY, K_TPM
-- Where the current call's arguments start in ARGV (0: a lone call).
local BASE = 0

local function A(i) return ARGV[BASE + i] end

local function arg(i)
  local v = tonumber(ARGV[BASE + i])
  if v == nil or v < 0 then return nil end
  return v
end

-- The limit keys of the call whose six start after KEYS[k].
local function use_limit_keys(k)
  K_IN, K_RPM, K_CLS, K_RPH, K_DAY, K_TPM = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
end

-- A window's count after the old requests aged out.
local function count(key, w)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - w)
  return redis.call('ZCARD', key)
end

local function window_reset(key, w)
  local r = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if r[2] == nil then return 0 end
  return math.max(tonumber(r[2]) + w - now, 0)
end

-- The bucket's level now (refilled at its rate), at the rate pm.
local function bucket(pm)
  local h = redis.call('HMGET', K_TPM, 'level', 'at', 'pm')
  local level, at, old = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
  if level == nil or at == nil or old == nil then return pm * TM end
  level = math.min(level + math.max(now - at, 0) * old, old * TM)
  return math.min(level, pm * TM)
end

local function save_bucket(level, pm)
  redis.call('HSET', K_TPM, 'level', level, 'at', now, 'pm', pm)
  local to_full = pm * TM - level
  local ms = 1000
  if pm > 0 then ms = math.ceil(to_full / pm) + 1000 end
  redis.call('PEXPIRE', K_TPM, math.max(ms, 1000))
end

local function bucket_standing(out, pm, level)
  if pm == nil then
    out[#out + 1] = 0
    out[#out + 1] = 0
    return
  end
  out[#out + 1] = math.floor(math.max(level, 0) / TM)
  out[#out + 1] = (pm > 0) and math.ceil((pm * TM - level) / pm) or 0
end

-- The wallet within one call (a batch touches it once, not once per
-- call of the batch): W is what was read of it, kept up to date by each
-- hold and charge; P holds the writes those made, sent by `flush` at the
-- end of the call, or before anything reads or writes the wallet in
-- another way (after which W is read again).
local W, P

local function int(n) return string.format('%d', n) end

local function flush()
  if P == nil then return end
  local p = P
  P = nil
  if p.held ~= 0 then redis.call('HINCRBY', p.w, 'held', int(p.held)) end
  if p.debit ~= 0 then redis.call('HINCRBY', p.w, 'debit', int(p.debit)) end
  for key, d in pairs(p.spent) do
    if d ~= 0 then redis.call('HINCRBY', p.w, 's:' .. key, int(d)) end
  end
  for key, d in pairs(p.key_held) do
    if d ~= 0 then redis.call('HINCRBY', p.w, 'h:' .. key, int(d)) end
  end
  if #p.holds > 0 then redis.call('HSET', p.holds_key, unpack(p.holds)) end
  if #p.leases > 0 then redis.call('ZADD', p.lease_key, unpack(p.leases)) end
  if #p.unleased > 0 then redis.call('ZREM', p.lease_key, unpack(p.unleased)) end
end

-- The current call's writes to come (a call of another wallet, which a
-- batch never has, sends the earlier ones first).
local function pending()
  if P ~= nil and P.w ~= K_W then flush() end
  if P == nil then
    P = {w = K_W, holds_key = K_HOLDS, lease_key = K_LEASE, held = 0, debit = 0,
         spent = {}, key_held = {}, holds = {}, leases = {}, unleased = {}, taken = {}}
  end
  return P
end

-- Before the wallet is touched other than through W and P.
local function direct()
  flush()
  W = nil
end

-- The wallet (nil when not seeded), with `key`'s spend and hold when it
-- has a cap.
local function wallet(key, cap)
  if W ~= nil and W.w ~= K_W then direct() end
  if W == nil then
    flush()
    local w = redis.call('HMGET', K_W, 'seed', 'credit', 'debit', 'held')
    if not w[1] then return nil end
    W = {w = K_W, credit = tonumber(w[2]) or 0, debit = tonumber(w[3]) or 0, held = tonumber(w[4]) or 0, keys = {}}
  end
  if cap ~= nil and W.keys[key] == nil then
    flush()
    local k = redis.call('HMGET', K_W, 's:' .. key, 'h:' .. key)
    W.keys[key] = {spent = tonumber(k[1]) or 0, held = tonumber(k[2]) or 0}
  end
  return W
end

-- Releases one hold (`h`: its "amount key capped", read when not known):
-- its amount leaves what the wallet and its key hold; false when it was
-- released already (settled, or lapsed).
local function release(hold_id, h)
  if h == nil or h == '' then
    h = redis.call('HGET', K_HOLDS, hold_id)
    if not h then return false end
  end
  if redis.call('HDEL', K_HOLDS, hold_id) == 0 then return false end
  local amount, key, capped = string.match(h, '^(%-?%d+) (%S+) ?(%d?)$')
  redis.call('ZREM', K_LEASE, hold_id)
  redis.call('HINCRBY', K_W, 'held', '-' .. amount)
  if capped ~= '0' and key ~= '-' then redis.call('HINCRBY', K_W, 'h:' .. key, '-' .. amount) end
  return true
end

-- Holds whose lease ran out (their node never settled them) are released.
local function expire_holds()
  direct()
  local ended = redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', now, 'LIMIT', 0, 100)
  for _, hold_id in ipairs(ended) do release(hold_id) end
end

-- The rpm, class and hourly windows: their limit's argument, their key's
-- place among the call's keys, their length, their name.
local WINDOWS = {{4, 2, MIN, 'rpm'}, {5, 3, MIN, 'rpm_by_class'}, {6, 4, HOUR, 'rph'}}

local function window_key(c)
  if c == 1 then return K_RPM elseif c == 2 then return K_CLS end
  return K_RPH
end

local function standing_call()
  local conc, daily, tpm = arg(3), arg(7), arg(8)
  local out = {1, now}
  if conc ~= nil then
    redis.call('ZREMRANGEBYSCORE', K_IN, '-inf', now)
    out[#out + 1] = redis.call('ZCARD', K_IN)
  else
    out[#out + 1] = 0
  end
  for c, w in ipairs(WINDOWS) do
    if arg(w[1]) ~= nil then
      out[#out + 1] = count(window_key(c), w[3])
      out[#out + 1] = window_reset(window_key(c), w[3])
    else
      out[#out + 1] = 0
      out[#out + 1] = 0
    end
  end
  out[#out + 1] = (daily ~= nil) and tonumber(redis.call('GET', K_DAY) or '0') or 0
  bucket_standing(out, tpm, (tpm ~= nil) and bucket(tpm) or 0)
  return out
end

-- The wallet's answer to a hold of `hold` for `key` under `cap`: nil when
-- it fits, else the refusal; and what is available before it.
local function wallet_check(hold, key, cap)
  local refusal, available
  -- Holds whose lease ran out only matter to a call they would refuse:
  -- they are released then (and by every read of the wallet).
  for attempt = 1, 2 do
    local w = wallet(key, cap)
    if w == nil then return {2}, 0 end
    available = w.credit - w.debit - w.held
    local budget = available
    refusal = nil
    if cap ~= nil then
      local k = w.keys[key]
      local left = math.max(cap - k.spent - k.held, 0)
      if left < budget then budget = left end
      if left < hold then refusal = {0, 'spend_cap', left, math.max(budget, 0)} end
    end
    if refusal == nil and available < hold then refusal = {0, 'wallet', available, math.max(budget, 0)} end
    if refusal == nil or attempt == 2 then break end
    expire_holds()
  end
  return refusal, available
end

local function take_hold(id, amount, hold, key, cap, hold_lease)
  local p = pending()
  W.held = W.held + hold
  p.held = p.held + hold
  local capped = '0'
  if cap ~= nil then
    W.keys[key].held = W.keys[key].held + hold
    p.key_held[key] = (p.key_held[key] or 0) + hold
    capped = '1'
  end
  p.taken[id] = true
  p.holds[#p.holds + 1] = id
  p.holds[#p.holds + 1] = amount .. ' ' .. key .. ' ' .. capped
  p.leases[#p.leases + 1] = now + hold_lease
  p.leases[#p.leases + 1] = id
end

local function admit_call(id)
  local conc, rpm, cls, rph, daily, tpm = arg(3), arg(4), arg(5), arg(6), arg(7), arg(8)
  local hold = arg(12)
  local estimate, day_left, lease = arg(9) or 0, arg(10) or 86400000, arg(11) or 600000
  -- Every limit is checked before anything is written; what the checks
  -- read is what the standings after the take are made of.
  local in_flight = 0
  if conc ~= nil then
    redis.call('ZREMRANGEBYSCORE', K_IN, '-inf', now)
    in_flight = redis.call('ZCARD', K_IN)
    if in_flight >= conc then
      return {0, 'concurrent', conc, (conc == 0) and -1 or 1000}
    end
  end
  local limit, counts = {rpm, cls, rph}, {}
  for c, w in ipairs(WINDOWS) do
    local l = limit[c]
    if l ~= nil then
      local key = window_key(c)
      local n = count(key, w[3])
      if n >= l then
        if l == 0 then return {0, w[4], 0, -1} end
        local r = redis.call('ZRANGE', key, n - l, n - l, 'WITHSCORES')
        return {0, w[4], l, math.max(tonumber(r[2]) + w[3] - now, 1)}
      end
      counts[c] = n
    end
  end
  local used = 0
  if daily ~= nil then
    used = tonumber(redis.call('GET', K_DAY) or '0')
    if used >= daily then
      return {0, 'daily_messages', daily, (daily == 0) and -1 or math.max(day_left, 1)}
    end
  end
  local level
  if tpm ~= nil then
    level = bucket(tpm)
    local want = estimate * TM
    if want > level then
      if estimate > tpm or tpm == 0 then return {0, 'input_tpm', tpm, -1} end
      return {0, 'input_tpm', tpm, math.max(math.ceil((want - level) / tpm), 1)}
    end
  end
  local key, cap = A(13), arg(14)
  local available = 0
  if hold ~= nil then
    local refusal
    refusal, available = wallet_check(hold, key, cap)
    if refusal ~= nil then return refusal end
  end
  -- Every limit and the wallet said yes: take from all of them. A call
  -- with a hold is kept once by its hold; one without, by its in-flight
  -- entry, which a concurrency limit needs anyway.
  if conc ~= nil or hold == nil then
    redis.call('ZADD', K_IN, now + lease, id)
    redis.call('PEXPIRE', K_IN, lease + 1000)
  end
  local out = {1, now, in_flight + 1}
  for c, w in ipairs(WINDOWS) do
    if limit[c] ~= nil then
      local wkey = window_key(c)
      redis.call('ZADD', wkey, now, id)
      redis.call('PEXPIRE', wkey, w[3])
      out[#out + 1] = counts[c] + 1
      out[#out + 1] = w[3]
    else
      out[#out + 1] = 0
      out[#out + 1] = 0
    end
  end
  if daily ~= nil then
    redis.call('INCR', K_DAY)
    redis.call('PEXPIRE', K_DAY, day_left + HOUR)
    out[#out + 1] = used + 1
  else
    out[#out + 1] = 0
  end
  if tpm ~= nil then
    level = level - estimate * TM
    save_bucket(level, tpm)
  end
  bucket_standing(out, tpm, level)
  if hold ~= nil then
    take_hold(id, A(12), hold, key, cap, arg(15) or 3600000)
    available = available - hold
  end
  out[#out + 1] = available
  return out
end

-- Releases a settled call's hold (`h`: as admit kept it) like `release`,
-- its writes deferred (see W and P).
local function release_held(hold_id, h)
  if h == nil or h == '' then
    direct()
    return release(hold_id)
  end
  -- A hold taken earlier in this call is not in Redis yet.
  if P ~= nil and P.taken[hold_id] then flush() end
  if redis.call('HDEL', K_HOLDS, hold_id) == 0 then return false end
  local amount, key, capped = string.match(h, '^(%-?%d+) (%S+) ?(%d?)$')
  amount = tonumber(amount)
  local p = pending()
  local w = (W ~= nil and W.w == K_W) and W or nil
  p.unleased[#p.unleased + 1] = hold_id
  p.held = p.held - amount
  if w ~= nil then w.held = w.held - amount end
  if capped ~= '0' and key ~= '-' then
    p.key_held[key] = (p.key_held[key] or 0) - amount
    if w ~= nil and w.keys[key] ~= nil then w.keys[key].held = w.keys[key].held - amount end
  end
  return true
end

-- `charged` (its decimal text `amount`) of `key`, once per `record`.
local function charge(record, charged, amount, key)
  if charged <= 0 or redis.call('HSETNX', K_PEND, record, '-' .. amount .. ' ' .. key) == 0 then return end
  local p = pending()
  p.debit = p.debit + charged
  p.spent[key] = (p.spent[key] or 0) + charged
  if W ~= nil and W.w == K_W then
    W.debit = W.debit + charged
    if W.keys[key] ~= nil then W.keys[key].spent = W.keys[key].spent + charged end
  end
end

local function hold_call()
  local hold, key, cap = arg(3), A(4), arg(5)
  if hold == nil then return redis.error_reply('tollgate limits: hold without an amount') end
  local refusal, available = wallet_check(hold, key, cap)
  if refusal ~= nil then return refusal end
  take_hold(A(2), A(3), hold, key, cap, arg(6) or 3600000)
  return {1, now, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, available - hold}
end

local function charge_call()
  local id = A(2)
  local live = release_held(id, A(5))
  charge(id .. ':charge', arg(3) or 0, A(3), A(4))
  return live and 1 or 0
end

-- Settles the current call (its arguments in the layout of ARGV for
-- finish/cancel, from BASE; its keys in K_IN..K_PEND).
local function settle_call()
  local kind, call_id = A(1), A(2)
  local billed, day_taken, taken, actual = arg(3) == 1, arg(4) == 1, arg(5) or 0, arg(6)
  local held, in_flight = arg(7) == 1, arg(11) == 1
  -- Once only: a call with a hold is live while its hold is (the charge
  -- is taken even if the hold's lease ran out, and a retried call finds
  -- the record pending and takes nothing again); one without, while it
  -- is in flight.
  local live
  if held then
    live = release_held(call_id, A(15))
    if kind == 'finish' then charge(A(10), arg(8) or 0, A(8), A(9)) end
    if in_flight then redis.call('ZREM', K_IN, call_id) end
  else
    live = redis.call('ZREM', K_IN, call_id) == 1
  end
  if not live then return 0 end
  if kind == 'cancel' then
    if arg(12) == 1 then redis.call('ZREM', K_RPM, call_id) end
    if arg(13) == 1 then redis.call('ZREM', K_CLS, call_id) end
    if arg(14) == 1 then redis.call('ZREM', K_RPH, call_id) end
    billed, actual = false, 0
  end
  if day_taken and not billed and tonumber(redis.call('GET', K_DAY) or '0') > 0 then
    redis.call('DECR', K_DAY)
  end
  if not billed then actual = 0 end
  if actual ~= nil and taken > 0 and redis.call('EXISTS', K_TPM) == 1 then
    local pm = tonumber(redis.call('HGET', K_TPM, 'pm')) or 0
    local level = math.min(bucket(pm) + (taken - actual) * TM, pm * TM)
    save_bucket(level, pm)
  end
  return 1
end

-- Each op: how many arguments it has (its op first), and whether it has
-- limit keys of its own.
local OPS = {admit = {15, true}, standing = {15, true}, finish = {15, true}, cancel = {15, true},
             hold = {6, false}, charge = {5, false}}

local function one(op)
  if op == 'admit' then return admit_call(A(2)) end
  if op == 'hold' then return hold_call() end
  if op == 'charge' then return charge_call() end
  if op == 'standing' then return standing_call() end
  return settle_call()
end

local function run(keys, args)
  KEYS, ARGV, BASE = keys, args, 0
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  K_W, K_HOLDS, K_LEASE, K_PEND = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local op = args[1]
  if OPS[op] ~= nil then
    use_limit_keys(4)
    return one(op)
  end
  -- Calls of one account in one call (admits and settlements; a node
  -- sends those that arrive while an earlier call of the account is on
  -- its way): ARGV[2] is their count, then each call's arguments in its
  -- op's layout (op first), and the limit keys of those that have them,
  -- in order. Each is all-or-nothing on its own, as if sent alone, in
  -- this order.
  if op == 'many' then
    local out, k = {}, 4
    BASE = 2
    for c = 1, tonumber(args[2]) do
      local shape = OPS[A(1)]
      if shape == nil then return redis.error_reply('tollgate limits: unknown op ' .. tostring(A(1))) end
      if shape[2] then
        use_limit_keys(k)
        k = k + 6
      end
      out[c] = one(A(1))
      BASE = BASE + shape[1]
    end
    return out
  end
  return redis.error_reply('tollgate limits: unknown op ' .. tostring(op))
end

-- Each call starts with nothing deferred and ends with it all sent, even
-- when one of its calls fails: the calls before it made their direct
-- writes (a hold released, a charge recorded), so their deferred ones
-- (the wallet's sums) must follow, as if each had written through.
local function call(keys, args)
  W, P = nil, nil
  local ok, out = pcall(run, keys, args)
  flush()
  if not ok then error(out, 0) end
  return out
end

redis.register_function('tollgate_admit_6', call)
