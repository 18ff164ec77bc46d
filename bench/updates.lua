-- wrk script: authenticated /nic/update requests rotating among the loaded hosts (bench/load_hosts.py names).
-- args: mode (nochg|good|any) first_account accounts hosts_per_account seed order (seq|random) password
--   nochg: myip = the address every loaded record holds; the answer must start with "nochg"
--   good:  myip changes every pass over the pool (and between runs, by seed): every request changes a record
--   any:   same requests, answers not checked (the bare endpoint)
-- Counts answers that are not what the mode expects and prints "wrong answers: N".

local b64chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

local function b64(data)
  return ((data:gsub('.', function(x)
    local r, b = '', x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if #x < 6 then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ '', '==', '=' })[#data % 3 + 1])
end

local mode, first, accounts, per, seed, order, password
local pool, n = 0, 0
wrong = 0  -- a global: done() reads it from each thread with t:get('wrong'), which sees no locals
local auth = {}
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
  local hdr = auth[name]
  if not hdr then
    hdr = 'Basic ' .. b64(name .. ':' .. password)
    auth[name] = hdr
  end
  return wrk.format('GET', '/nic/update?hostname=h' .. j .. '.' .. name .. '.example.test&myip=' .. ip,
    { ['Authorization'] = hdr, ['User-Agent'] = 'bench/1.0 bench@example.test' })
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
