"""Generic atomic steps, each one Lua script run by Redis or by the memory driver.

Keep to the Lua 5.1 subset Redis embeds; return integers, strings, or flat arrays.
"""

from __future__ import annotations

from .effects import Eval, Script

# KEYS[1] counter; ARGV[1] amount, ARGV[2] window in ms. The window starts with the
# first hit (fixed window); returns {count, ms left}.
COUNT = Script(
    "count",
    """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {n, ttl}
""",
)

# KEYS[1] hash; ARGV field, expected ('' = absent), new value. 1 when swapped.
COMPARE_AND_SET = Script(
    "compare_and_set",
    """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (cur or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
""",
)

# KEYS[1] hash; ARGV[1] field. Removes the field and returns its value, once.
CONSUME = Script(
    "consume",
    """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return v
""",
)

# KEYS[1] hash; ARGV field, number. Sets the field only when the number is larger
# than the stored one (a monotonic high-water mark: the TOTP replay guard). 1 if advanced.
ADVANCE = Script(
    "advance",
    """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local new = tonumber(ARGV[2])
if new <= cur then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
""",
)


def count(key: str, amount: int, window_ms: int) -> Eval:
    return Eval(COUNT, (key,), (amount, window_ms))


def compare_and_set(key: str, field: str, expected: str | None, new: str) -> Eval:
    return Eval(COMPARE_AND_SET, (key,), (field, expected or "", new))


def consume(key: str, field: str) -> Eval:
    return Eval(CONSUME, (key,), (field,))


def advance(key: str, field: str, value: int) -> Eval:
    return Eval(ADVANCE, (key,), (field, value))
