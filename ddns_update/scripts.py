"""The update endpoint's atomic steps (Lua, run by Redis or by the memory driver).

``UPDATE`` is the whole warm path in one round trip: it checks the login's failure throttle, then the
request's keyed verifier against the one cached in the account's slot, then compare-and-sets every
requested host and counts toward abuse. Every key it touches is in the account's ``{a:ID}`` slot. The
per-host history lists and the group hashes an account login names are named inside the script (prefix +
name) because which ones a request touches is known only there; they share the hash tag of the declared
keys, so on Redis Cluster they are local to the node that runs the script.
"""

from __future__ import annotations

from mfa_middleware.store.effects import Script

# ARGV positions of UPDATE, named once for both sides: the script's first line binds each to a local of the
# same name (``_PRELUDE``), and service.py builds the argument list in this order. The head (up to
# ``verifier``) is the same for every update of one login (its name, kind, the policies' limits, the history
# prefix, its group): the quick lane encodes it with the KEYS ahead, from pieces made once per account-id
# length (``UpdateService._update_command``), and packs only the rest per update.
ARG_ORDER = (
    "login", "kind", "nochg_limit", "fault_limit", "window_ms", "history_prefix", "history_length", "group",
    "pair_limit", "login_limit", "throttle_ms", "known_ms", "known_max",
    "verifier", "now_ms", "ipv4", "ipv6", "offline", "history_tail", "agent_ok", "now_s",
    "client", "vetted", "prefix", "v6map",
)
UPDATE_KEYS = ("account", "hosts", "cred", "group", "abuse", "nochg", "faults", "cred_fails", "iids")

_PRELUDE = f"local {', '.join(ARG_ORDER)} = (unpack or table.unpack)(ARGV, 1, {len(ARG_ORDER)})\n"

# The failure throttle (credentials.py says why these limits): the ``cred_fails`` hash holds, per window,
# ``LOGIN`` -> failures from addresses that have not proven the login and ``LOGIN ADDRESS`` -> failures from
# that address. The credential cache (``cred`` hash) holds, beside ``LOGIN`` -> verifier, ``LOGIN<TAB>seen`` ->
# "EPOCH\nADDRESS\tSECONDS\n..." (addresses that proved the login under its current password, newest first;
# a login has no whitespace, so the field never names a login), read with the verifier in one call.
# STORE_VERIFIER (the cold path's success) writes it the same way: ``_KNOWN`` is shared by the two scripts.
_KNOWN = """
local SEEN = '\\tseen'
local function parse_seen(value, epoch)
  local list = {}
  if not value or string.sub(value, 1, #epoch + 1) ~= epoch .. '\\n' then return list end
  for a, t in string.gmatch(string.sub(value, #epoch + 2), '([^\\t\\n]*)\\t(%d+)\\n') do
    list[#list + 1] = {a, tonumber(t)}
  end
  return list
end
-- When ``address`` proved the login under ``epoch`` less than ``ttl`` seconds ago: that time, else nil. A plain
-- search, no parse: this runs on every update.
local function seen_at(value, epoch, address, now, ttl)
  if not value or string.sub(value, 1, #epoch + 1) ~= epoch .. '\\n' then return nil end
  local i = string.find(value, '\\n' .. address .. '\\t', #epoch + 1, true)
  if not i then return nil end
  local t = tonumber(string.match(value, '^%d+', i + #address + 2))
  if t and now - t < ttl then return t end
  return nil
end
-- Puts ``address`` first with time ``now``; keeps at most ``max`` entries, none expired.
local function remember(key, login, epoch, list, address, now, ttl, max)
  local out = {epoch, '\\n', address, '\\t', now, '\\n'}
  local n = 1
  for _, e in ipairs(list) do
    if n >= max then break end
    if e[1] ~= address and now - e[2] < ttl then
      out[#out + 1] = e[1]; out[#out + 1] = '\\t'; out[#out + 1] = e[2]; out[#out + 1] = '\\n'
      n = n + 1
    end
  end
  redis.call('HSET', key, login .. SEEN, table.concat(out))
end
"""

# KEYS: UPDATE_KEYS: 1 account hash, 2 hosts hash, 3 credential cache, 4 group hash (account hash for
#       account logins), 5 abuse flags (login -> reason), 6 nochg counters ("LOGIN HOST" -> n), 7 fault
#       counters (login -> n), 8 failure throttle, 9 IPv6 interface ids (host -> id).
# ARGV: ARG_ORDER, then the requested tokens: 'h:FQDN' or 't:TOKEN' (not an FQDN: maybe a group).
# Returns {'ok', nlines, code, hosts, ... , host, old, new, ...} or one status (service.py acts on each):
# 'stale' (login no longer maps here), 'denied' (a login that may not update), 'throttled' (over a failure
# limit: nothing compared), 'vet' (an address that has not proven the login: check its own limit first, then
# run again with vetted=1), 'miss' + '1'|'0' (no cached verifier matched: the failure is already counted,
# against the login's cap too when '1'; verify the slow way), 'abuse', 'badagent', or 'iids' + host, id, ...
# (a prefix update: the interface ids of the hosts it touches, to combine and send back in v6map).
UPDATE = Script(
    "ddns_update",
    _PRELUDE + _KNOWN + """
local acct = redis.call('HMGET', KEYS[1], 'pw_epoch', 'ddns_pw', 'ddns_offline')
if not acct[1] then return {'stale'} end
local epoch
local members = {}
if kind == 'a' then
  if acct[2] == 'deny' then return {'denied'} end
  epoch = acct[1]
else
  local g = redis.call('HMGET', KEYS[4], 'login', 'ver', 'hosts')
  if g[1] ~= login then return {'stale'} end
  -- A tombstone (login kept, no 'ver'): a group delete that has not released the login claim yet, or was
  -- cut off before it did (groups.py). The login means nothing any more: badauth, not a re-resolve loop.
  if not g[2] then return {'denied'} end
  epoch = g[2]
  for h in string.gmatch(g[3] or '', '[^,]+') do members[#members + 1] = h end
end

-- The throttle comes before any comparison, so a throttled guess learns nothing, warm cache or not.
local now = tonumber(now_s)
local pair = login .. ' ' .. client
local fails = redis.call('HMGET', KEYS[8], login, pair)
if (tonumber(fails[2]) or 0) >= tonumber(pair_limit) then return {'throttled'} end
-- One read for the cached verifier and the addresses that proved the login (``_KNOWN``).
local cred = redis.call('HMGET', KEYS[3], login, login .. SEEN)
local cached, seen = cred[1], cred[2]
local proven_at = seen_at(seen, epoch, client, now, tonumber(known_ms) / 1000)
if not proven_at then
  if (tonumber(fails[1]) or 0) >= tonumber(login_limit) then return {'throttled'} end
  if vetted ~= '1' then return {'vet'} end
end
-- Counted before the slow verify runs (outside this step): parallel guesses cannot all pass the check.
local function miss()
  redis.call('HINCRBY', KEYS[8], pair, 1)
  if not proven_at then redis.call('HINCRBY', KEYS[8], login, 1) end
  if redis.call('PTTL', KEYS[8]) < 0 then redis.call('PEXPIRE', KEYS[8], throttle_ms) end
  return {'miss', proven_at and '0' or '1'}
end
-- The cache only ever says yes: anything but a match goes to the slow verify, which decides (and costs
-- what a wrong password for an unknown login costs, so the answer's timing does not tell them apart).
if not cached then return miss() end
local c_ver, c_epoch, c_exp = string.match(cached, '^([^|]*)|([^|]*)|([^|]*)$')
if c_epoch ~= epoch or (tonumber(c_exp) or 0) < tonumber(now_ms) then
  redis.call('HDEL', KEYS[3], login)
  return miss()
end
-- Verifiers start with a 8-hex key id: one made under another server key (a rotated MFA_SECRET_KEY, an
-- instance configured differently) is dropped. The rest is an HMAC under the server key, so the
-- comparison's timing tells an attacker nothing usable.
if c_ver ~= verifier then
  if string.sub(c_ver, 1, 9) ~= string.sub(verifier, 1, 9) then redis.call('HDEL', KEYS[3], login) end
  return miss()
end
-- Proven: remember the address (refreshed once a day, not on every update).
if not proven_at or now - proven_at > 86400 then
  remember(KEYS[3], login, epoch, parse_seen(seen, epoch), client, now, tonumber(known_ms) / 1000,
    tonumber(known_max))
end
if redis.call('HEXISTS', KEYS[5], login) == 1 then return {'abuse'} end

local window = tonumber(window_ms)
local function bump(key, field, limit, reason)
  local n = redis.call('HINCRBY', key, field, 1)
  -- The window runs from the counter hash's first hit, which is some field's first (n == 1): a key lookup
  -- fewer per repeated nochg than asking PTTL every time.
  if n == 1 and redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, window) end
  if n > tonumber(limit) then redis.call('HSET', KEYS[5], login, reason .. '@' .. now_s) end
end
local function fault(reason) bump(KEYS[7], login, fault_limit, reason) end
if agent_ok ~= '1' then fault('badagent'); return {'badagent'} end
-- A feature the account may not use is one answer for the whole request, before any host is looked at.
if offline == '1' and acct[3] == 'deny' then return {'ok', 1, '!donator', ''} end

-- What each answer line covers: {code} alone, or {nil, hosts, name}. Nothing is written yet.
local base = string.sub(KEYS[1], 1, #KEYS[1] - 7)  -- KEYS[1] is the slot's prefix .. 'account'
local function own_group(name)
  if #name > 63 or not string.match(name, '^[a-z0-9][a-z0-9_%-]*$') then return nil end
  local g = redis.call('HMGET', base .. 'group:' .. name, 'ver', 'hosts')
  if not g[1] then return nil end
  local list = {}
  for h in string.gmatch(g[2] or '', '[^,]+') do list[#list + 1] = h end
  return list
end
local function member(h)
  if kind == 'a' then return true end
  for _, m in ipairs(members) do if m == h then return true end end
  return false
end
-- One entry per answer line: {code, text} when its answer is known now, {false, hosts} to apply.
local plan = {}
if #ARGV == NARGS then
  if kind == 'a' then plan[1] = {'notfqdn', ''}
  elseif #members == 0 then plan[1] = {'nohost', ''}
  else for _, h in ipairs(members) do plan[#plan + 1] = {false, {h}} end end
end
for i = NARGS + 1, #ARGV do
  local typ, name = string.sub(ARGV[i], 1, 2), string.sub(ARGV[i], 3)
  if typ == 'h:' and member(name) then plan[#plan + 1] = {false, {name}}
  elseif typ == 'h:' then plan[#plan + 1] = {'nohost', name}
  elseif kind == 'g' and name == group then plan[#plan + 1] = {false, members}
  else
    local list = kind == 'a' and own_group(name)
    if list then plan[#plan + 1] = {false, list} else plan[#plan + 1] = {'notfqdn', ''} end
  end
end

-- An IPv6 prefix: each host with an interface id gets prefix + id, computed by the caller (service.py,
-- with ipaddress) from the ids this step reports, and checked here against the ids as they are now.
local v6for = {}
if prefix ~= '' then
  for h, id, address in string.gmatch(v6map, '(%S+) (%S+) (%S+)') do v6for[h] = {id, address} end
  local ids, stale = {}, false
  for _, p in ipairs(plan) do
    for _, h in ipairs(p[1] and {} or p[2]) do
      local id = redis.call('HGET', KEYS[9], h)
      if id then ids[#ids + 1] = h; ids[#ids + 1] = id end
      if (id or '') ~= (v6for[h] and v6for[h][1] or '') then stale = true end
    end
  end
  if stale then
    local out = {'iids'}
    for _, v in ipairs(ids) do out[#out + 1] = v end
    return out
  end
end

local changes = {}
local function apply(h)
  local cur = redis.call('HGET', KEYS[2], h)
  if not cur then return 'nohost' end
  local v4, v6, off = string.match(cur, '^([^|]*)|([^|]*)|([^|]*)|')
  local n4, n6 = v4, v6
  if ipv4 ~= '' then n4 = ipv4 end
  if v6for[h] then n6 = v6for[h][2] elseif ipv6 ~= '' then n6 = ipv6 end
  if n4 == v4 and n6 == v6 and offline == off then
    -- A router sending a prefix sends its IPv4 address and its prefix whenever either changes: the part
    -- that did not change is not a repeat.
    if prefix == '' then bump(KEYS[6], login .. ' ' .. h, nochg_limit, 'nochg ' .. h) end
    return 'nochg'
  end
  local new = n4 .. '|' .. n6 .. '|' .. offline .. '|' .. now_s
  redis.call('HSET', KEYS[2], h, new)
  local hist = history_prefix .. h
  -- Trimmed only once it is longer than kept: a redis.call fewer on most changes.
  if redis.call('LPUSH', hist, new .. '|' .. history_tail) > tonumber(history_length) then
    redis.call('LTRIM', hist, 0, tonumber(history_length) - 1)
  end
  changes[#changes + 1] = h
  changes[#changes + 1] = cur
  changes[#changes + 1] = new
  return 'good'
end
local rank = {good = 3, nochg = 2, nohost = 1}

local lines = {}
for _, p in ipairs(plan) do
  local code, hosts = p[1], p[2]
  if code then
    fault(code)
  else
    -- Several hosts (a group) answer one line: the best of their codes.
    code = 'nohost'
    for _, h in ipairs(p[2]) do
      local c = apply(h)
      if rank[c] > rank[code] then code = c end
    end
    if code == 'nohost' then fault(code) end
    hosts = table.concat(p[2], ',')
  end
  lines[#lines + 1] = code
  lines[#lines + 1] = hosts
end
local out = {'ok', #lines / 2}
for _, v in ipairs(lines) do out[#out + 1] = v end
for _, v in ipairs(changes) do out[#out + 1] = v end
return out
""".replace("NARGS", str(len(ARG_ORDER))),
)

# KEYS 1 account hash, 2 credential cache, 3 group hash (account hash for account logins), 4 failure
# throttle; ARGV login, kind, epoch the password was verified under, cached value,
# client address, '1' when UPDATE counted the failure against the login's cap too, now (s), known_ms,
# known_max. Refuses a stale epoch, so a verify that raced a password change or rotation never caches the
# old password. Else caches the verifier, takes back the failure UPDATE counted before the slow verify, and
# remembers the address as one that proved the login.
STORE_VERIFIER = Script(
    "ddns_store_verifier",
    _KNOWN + """
local login, kind, epoch, value, client, charged, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
  tonumber(ARGV[7])
local cur
if kind == 'a' then cur = redis.call('HGET', KEYS[1], 'pw_epoch')
else
  local g = redis.call('HMGET', KEYS[3], 'login', 'ver')
  if g[1] ~= login then return 0 end
  cur = g[2]
end
if cur ~= epoch then return 0 end
redis.call('HSET', KEYS[2], login, value)
local function refund(field)
  if (tonumber(redis.call('HGET', KEYS[4], field)) or 0) > 0 then redis.call('HINCRBY', KEYS[4], field, -1) end
end
refund(login .. ' ' .. client)
if charged == '1' then refund(login) end
remember(KEYS[2], login, epoch, parse_seen(redis.call('HGET', KEYS[2], login .. SEEN), epoch), client, now,
  tonumber(ARGV[8]) / 1000, tonumber(ARGV[9]))
return 1
""",
)

# KEYS 1 hosts hash, 2 the host's history; ARGV host, record we wrote, record before, history entry.
# Puts the previous record back after a failed DNS push, unless a newer update already replaced ours.
REVERT = Script(
    "ddns_revert",
    """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('LREM', KEYS[2], 1, ARGV[4])
return 1
""",
)

# KEYS 1 abuse flags, 2 fault counters, 3 nochg counters; ARGV login. Clears the login's flag and its own
# counters, no other login's. 1 when it was flagged.
CLEAR_ABUSE = Script(
    "ddns_clear_abuse",
    """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local prefix = ARGV[1] .. ' '
for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
  if string.sub(f, 1, #prefix) == prefix then redis.call('HDEL', KEYS[3], f) end
end
return removed
""",
)
