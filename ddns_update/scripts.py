"""The update endpoint's atomic steps (Lua, run by Redis or by the memory driver).

``UPDATE`` is the whole warm path in one round trip: it checks the request's keyed verifier against the
one cached in the account's slot, then compare-and-sets every requested host and counts toward abuse.
Every key it touches is in the account's ``{a:ID}`` slot. The per-host history lists are named inside
the script (prefix + host) because a group name expands to its hosts only there; they share the hash
tag of the declared keys, so on Redis Cluster they are local to the node that runs the script.
"""

from __future__ import annotations

from mfa_middleware.store.effects import Script

# ARGV positions of UPDATE, named once for the Python side (service.py builds the argument list). The first
# eight are the same for every update of one login (its name, kind, the policy's limits, the history prefix,
# its group): the quick lane encodes them with the KEYS ahead, from pieces made once per account-id length
# (``UpdateService._update_command``), and packs only the rest per update.
ARG_ORDER = (
    "login", "kind", "nochg_limit", "fault_limit", "window_ms", "history_prefix", "history_length", "group",
    "verifier", "now_ms", "ipv4", "ipv6", "offline", "history_tail", "agent_ok", "now_s",
)

# KEYS: 1 account hash, 2 hosts hash, 3 credential cache, 4 group hash (account hash for account logins),
#       5 abuse flags (login -> reason), 6 nochg counters (host -> n), 7 fault counters (login -> n).
# ARGV: see ARG_ORDER, then the requested tokens: 'h:FQDN' or 't:TOKEN' (not an FQDN: maybe a group).
# Returns {'ok', nlines, code, hosts, ... , host, old, new, ...} or one status: 'miss' (no fresh cached
# verifier: verify the password the slow way), 'wrong', 'stale' (login no longer maps here), 'denied'
# (account passwords may not update), 'abuse', 'badagent'.
UPDATE = Script(
    "ddns_update",
    """
local login, kind = ARGV[1], ARGV[2]
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
local cached = redis.call('HGET', KEYS[3], login)
if not cached then return {'miss'} end
local c_ver, c_epoch, c_exp = string.match(cached, '^([^|]*)|([^|]*)|([^|]*)$')
if c_epoch ~= epoch or (tonumber(c_exp) or 0) < tonumber(ARGV[10]) then
  redis.call('HDEL', KEYS[3], login)
  return {'miss'}
end
-- Verifiers start with a 8-hex key id: one made under another server key (a rotated MFA_SECRET_KEY, an
-- instance configured differently) is a miss, not a wrong password. The rest is an HMAC under the server
-- key, so the comparison's timing tells an attacker nothing usable.
if c_ver ~= ARGV[9] then
  if string.sub(c_ver, 1, 9) ~= string.sub(ARGV[9], 1, 9) then
    redis.call('HDEL', KEYS[3], login)
    return {'miss'}
  end
  return {'wrong'}
end
if redis.call('HEXISTS', KEYS[5], login) == 1 then return {'abuse'} end

local window = tonumber(ARGV[5])
local function bump(key, field, limit, reason)
  local n = redis.call('HINCRBY', key, field, 1)
  -- The window runs from the counter hash's first hit, which is some field's first (n == 1): a key lookup
  -- fewer per repeated nochg than asking PTTL every time.
  if n == 1 and redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, window) end
  if n > tonumber(limit) then redis.call('HSET', KEYS[5], login, reason .. '@' .. ARGV[16]) end
end
local function fault(reason) bump(KEYS[7], login, ARGV[4], reason) end
if ARGV[15] ~= '1' then fault('badagent'); return {'badagent'} end

local offline_denied = acct[3] == 'deny'
local changes = {}
local function apply(h)
  local cur = redis.call('HGET', KEYS[2], h)
  if not cur then return 'nohost' end
  if ARGV[13] == '1' and offline_denied then return '!donator' end
  local v4, v6, off = string.match(cur, '^([^|]*)|([^|]*)|([^|]*)|')
  local n4, n6 = v4, v6
  if ARGV[11] ~= '' then n4 = ARGV[11] end
  if ARGV[12] ~= '' then n6 = ARGV[12] end
  if n4 == v4 and n6 == v6 and ARGV[13] == off then
    bump(KEYS[6], h, ARGV[3], 'nochg ' .. h)
    return 'nochg'
  end
  local new = n4 .. '|' .. n6 .. '|' .. ARGV[13] .. '|' .. ARGV[16]
  redis.call('HSET', KEYS[2], h, new)
  local hist = ARGV[6] .. h
  -- Trimmed only once it is longer than kept: a redis.call fewer on most changes.
  if redis.call('LPUSH', hist, new .. '|' .. ARGV[14]) > tonumber(ARGV[7]) then
    redis.call('LTRIM', hist, 0, tonumber(ARGV[7]) - 1)
  end
  changes[#changes + 1] = h
  changes[#changes + 1] = cur
  changes[#changes + 1] = new
  return 'good'
end
local function member(h)
  if kind == 'a' then return true end
  for _, m in ipairs(members) do if m == h then return true end end
  return false
end
local rank = {good = 4, nochg = 3, ['!donator'] = 2, nohost = 1}
local function whole_group()
  local best, names = 'nohost', {}
  for _, h in ipairs(members) do
    local code = apply(h)
    if rank[code] > rank[best] then best = code end
    names[#names + 1] = h
  end
  return best, table.concat(names, ',')
end

local lines = {}
local function line(code, hosts)
  if code == 'nohost' or code == 'notfqdn' then fault(code) end
  lines[#lines + 1] = code
  lines[#lines + 1] = hosts
end
if #ARGV == 16 then
  if kind == 'a' then line('notfqdn', '')
  elseif #members == 0 then line('nohost', '')
  else for _, h in ipairs(members) do line(apply(h), h) end end
end
for i = 17, #ARGV do
  local typ, name = string.sub(ARGV[i], 1, 2), string.sub(ARGV[i], 3)
  if typ == 'h:' and member(name) then line(apply(name), name)
  elseif typ == 'h:' then line('nohost', name)
  elseif kind == 'g' and name == ARGV[8] then line(whole_group())
  else line('notfqdn', '') end
end
local out = {'ok', #lines / 2}
for _, v in ipairs(lines) do out[#out + 1] = v end
for _, v in ipairs(changes) do out[#out + 1] = v end
return out
""",
)

# KEYS 1 account hash, 2 credential cache, 3 group hash (account hash for account logins);
# ARGV login, kind, epoch the password was verified under, cached value. Refuses a stale epoch, so a
# verify that raced a password change or rotation never caches the old password.
STORE_VERIFIER = Script(
    "ddns_store_verifier",
    """
local cur
if ARGV[2] == 'a' then cur = redis.call('HGET', KEYS[1], 'pw_epoch')
else
  local g = redis.call('HMGET', KEYS[3], 'login', 'ver')
  if g[1] ~= ARGV[1] then return 0 end
  cur = g[2]
end
if cur ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
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
