-- wrk script: authenticated /nic/update requests rotating among the loaded hosts (bench/load_hosts.py names).
-- args: mode (nochg|good|any) first_account accounts hosts_per_account seed order (seq|random) password
--   nochg: myip = the address every loaded record holds; the answer must start with "nochg"
--   good:  myip changes every pass over the pool (and between runs, by seed): every request changes a record
--   any:   same requests, answers not checked (the bare endpoint)
-- Counts answers that are not what the mode expects and prints "wrong answers: N".

local b64chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local bit = require('bit')

-- Base64 three bytes at a time, for every request's header (see request()).
local function b64(data)
  local out, n = {}, #data
  for i = 1, n, 3 do
    local a, b, c = data:byte(i, i + 2)
    local v = bit.bor(bit.lshift(a, 16), bit.lshift(b or 0, 8), c or 0)
    local d1, d2 = bit.rshift(v, 18), bit.band(bit.rshift(v, 12), 63)
    local d3, d4 = bit.band(bit.rshift(v, 6), 63), bit.band(v, 63)
    out[#out + 1] = b64chars:sub(d1 + 1, d1 + 1) .. b64chars:sub(d2 + 1, d2 + 1)
      .. (b and b64chars:sub(d3 + 1, d3 + 1) or '=') .. (c and b64chars:sub(d4 + 1, d4 + 1) or '=')
  end
  return table.concat(out)
end

local mode, first, accounts, per, seed, order, password
local pool, n = 0, 0
wrong = 0  -- a global: done() reads it from each thread with t:get('wrong'), which sees no locals
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or 'nochg'
  first = tonumber(args[2] or '0')
  accounts = tonumber(args[3] or '1000')
  per = tonumber(args[4] or '10')
  seed = tonumber(args[5] or '1')
  order = args[6] or 'seq'
  password = args[7] or 'bench-router-password'
  pool = accounts * per
  math.randomseed(seed)
end

function request()
  local a, j, ip
  if order == 'random' then
    a = math.random(0, accounts - 1)
    j = math.random(0, per - 1)
    ip = '10.' .. math.random(0, 255) .. '.' .. math.random(0, 255) .. '.' .. math.random(1, 254)
  else
    local k = n % pool
    local pass = math.floor(n / pool)
    a = k % accounts
    j = math.floor(k / accounts)
    ip = '10.' .. (seed % 256) .. '.' .. (math.floor(pass / 250) % 250) .. '.' .. (pass % 250 + 1)
  end
  n = n + 1
  if mode == 'nochg' then ip = '203.0.113.7' end
  local name = string.format('r%06d', first + a)
  -- The login's header is made here, for every request: the same work at 100 accounts as at 100,000. A table
  -- of headers made once per login would grow wrk's Lua heap with the accounts, and wrk's extra CPU per
  -- request, on the core it shares with Redis, would show up as update latency at 1M hosts.
  local auth = 'Basic ' .. b64(name .. ':' .. password)
  return wrk.format('GET', '/nic/update?hostname=h' .. j .. '.' .. name .. '.example.test&myip=' .. ip,
    { ['Authorization'] = auth, ['User-Agent'] = 'bench/1.0 bench@example.test' })
end

function response(status, headers, body)
  if mode ~= 'any' and body:sub(1, #mode) ~= mode then
    wrong = wrong + 1
    if wrong <= 3 then io.stderr:write('unexpected answer: ' .. status .. ' ' .. body) end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get('wrong') or 0) end
  io.write('wrong answers: ' .. total .. '\n')
end
