"""``redis://…``: the gate's state on a Redis server, each step one Lua script on its clock.

The rules are those of :mod:`certpoll._backends.gate_state`, written once more in Lua
because Redis runs a script atomically, next to the data, in one round trip (``EVALSHA``).
Time is the server's ``TIME``, never a client's: replicas with skewed clocks share one
limit. Per key, three Redis keys share one hash tag (so a cluster keeps them on one node):
``{key}:state`` (a hash), ``{key}:answered`` (a sorted set of hits by effective answer
time) and ``{key}:outstanding`` (hits awaiting their answer, by admission time).

Lua turns numbers into text with 14 significant digits, 0.1 ms on an epoch time, so every
number goes to Redis through ``string.format('%.6f')``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from .gate import EPSILON, MIN_WAIT, Admitted, Answer, GateRules, Wait, unreachable
from .urls import BackendURL

if TYPE_CHECKING:
    import redis.asyncio
    from redis.commands.core import AsyncScript

__all__ = ["RedisGate"]

#: Bounded waits on the server: connecting, and any one command.
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 5.0

_PRELUDE = f"""
local state, answered, outstanding = KEYS[1], KEYS[2], KEYS[3]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local EPSILON, MIN_WAIT = {EPSILON!r}, {MIN_WAIT!r}
local function f(x) return string.format('%.6f', x) end
local function expire_all(seconds)
  local ms = math.ceil(seconds * 1000)
  redis.call('PEXPIRE', state, ms)
  redis.call('PEXPIRE', answered, ms)
  redis.call('PEXPIRE', outstanding, ms)
end
"""

_ADMIT = (
    _PRELUDE
    + """
-- ARGV: margin, lost_after, spacing, recheck, keep, ttl, burst, then requests, seconds per
-- window
local margin, lost, spacing = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local recheck, keep, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local burst = tonumber(ARGV[7])
-- A hit whose answer never came counts as answered lost_after after its admission.
local gone = redis.call('ZRANGEBYSCORE', outstanding, '-inf', '(' .. f(now - lost), 'WITHSCORES')
for i = 1, #gone, 2 do
  redis.call('ZREM', outstanding, gone[i])
  redis.call('ZADD', answered, f(tonumber(gone[i + 1]) + lost), gone[i])
end
redis.call('ZREMRANGEBYSCORE', answered, '-inf', '(' .. f(now - keep))
local s = redis.call('HMGET', state, 'cooling', 'not_before', 'probe', 'probe_deadline', 'paced_at')
local cooling = s[1] == '1'
if cooling then
  local not_before = tonumber(s[2])
  if now < not_before then return {0, f(math.max(not_before - now, MIN_WAIT)), 0} end
  if s[3] then
    if now <= tonumber(s[4]) then return {0, f(recheck), 1} end
    redis.call('HDEL', state, 'probe', 'probe_deadline')
  end
end
-- The pace: up to burst ahead of the schedule, one spacing per admission.
local wait = 0
local paced_at = tonumber(s[5] or '0')
if spacing > 0 and s[5] then wait = paced_at - spacing * (burst - 1) - now end
if wait <= EPSILON then wait = 0 end
local waiting = redis.call('ZCARD', outstanding)
for i = 8, #ARGV, 2 do
  local requests, seconds = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local span = seconds + margin + EPSILON
  local floor = f(now - span)
  local counted = redis.call('ZCOUNT', answered, floor, '+inf')
  local excess = counted + waiting - requests + 1
  if excess > 0 then
    if excess <= counted then
      local hit = redis.call('ZRANGEBYSCORE', answered, floor, '+inf', 'WITHSCORES', 'LIMIT',
        excess - 1, 1)
      wait = math.max(wait, tonumber(hit[2]) + span - now)
    else
      wait = math.max(wait, span)
    end
  end
end
if wait > 0 then return {0, f(math.max(wait, MIN_WAIT)), 0} end
local ticket = tostring(redis.call('HINCRBY', state, 'issued', 1))
redis.call('ZADD', outstanding, f(now), ticket)
redis.call('HSET', state, 'paced_at', f(math.max(paced_at, now) + spacing))
if cooling then redis.call('HSET', state, 'probe', ticket, 'probe_deadline', f(now + lost)) end
local not_before = tonumber(redis.call('HGET', state, 'not_before') or '0')
expire_all(math.max(ttl, not_before - now + ttl))
if cooling then return {1, ticket, 1} end
return {1, ticket, 0}
"""
)

_REPORT = (
    _PRELUDE
    + """
-- ARGV: ticket ('' for none), conclusive, hold ('' none, 'cooldown', or seconds), ttl,
-- then the cooldowns after the 1st, 2nd, ... 429 (the last one repeats)
local ticket, conclusive, hold = ARGV[1], ARGV[2] == '1', ARGV[3]
local ttl = tonumber(ARGV[4])
if ticket ~= '' and redis.call('ZREM', outstanding, ticket) == 1 then
  redis.call('ZADD', answered, f(now), ticket)
end
local is_probe = ticket ~= '' and redis.call('HGET', state, 'probe') == ticket
if hold ~= '' then
  local s = redis.call('HMGET', state, 'cooling', 'strikes', 'not_before')
  local strikes = tonumber(s[2] or '0')
  local not_before = tonumber(s[3] or '0')
  if is_probe then
    strikes = strikes + 1
  elseif s[1] ~= '1' then
    strikes = 0
    not_before = now
  end
  local delay
  if hold == 'cooldown' then
    delay = tonumber(ARGV[5 + math.min(strikes, #ARGV - 5)])
  else
    delay = tonumber(hold)
  end
  not_before = math.max(not_before, now + delay)
  redis.call('HSET', state, 'cooling', '1', 'strikes', strikes, 'not_before', f(not_before))
  ttl = math.max(ttl, not_before - now + ttl)
end
if is_probe then
  redis.call('HDEL', state, 'probe', 'probe_deadline')
  if conclusive and hold == '' then
    redis.call('HSET', state, 'cooling', '0', 'strikes', '0')
    redis.call('HDEL', state, 'not_before')
  end
end
expire_all(ttl)
if redis.call('HGET', state, 'cooling') ~= '1' then return f(0) end
return f(math.max(0, tonumber(redis.call('HGET', state, 'not_before') or '0') - now))
"""
)


def _number(value: float) -> str:
    return f"{value:.6f}"


class RedisGate:
    """Gate state per key on a Redis server (``redis://``, or ``rediss://`` for TLS)."""

    def __init__(self, url: BackendURL) -> None:
        import redis.asyncio

        self._url = url
        self.name = url.redacted
        self._client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            url.url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
        )
        self._admit = self._client.register_script(_ADMIT)
        self._report = self._client.register_script(_REPORT)

    def __repr__(self) -> str:
        return f"RedisGate({self.name!r})"

    @staticmethod
    def _keys(key: str) -> list[str]:
        return [f"{{{key}}}:state", f"{{{key}}}:answered", f"{{{key}}}:outstanding"]

    @staticmethod
    def _ttl(rules: GateRules) -> float:
        """How long an idle key's state is kept: while any hit or probe could still count."""
        return rules.longest + rules.lost_after + 60.0

    async def _run(self, script: AsyncScript, keys: list[str], args: list[str]) -> object:
        import redis.exceptions

        try:
            reply: object = await script(keys=keys, args=args)
            return reply
        except (redis.exceptions.RedisError, OSError) as exc:
            raise unreachable(self._url, exc) from exc

    async def admit(self, key: str, rules: GateRules) -> Admitted | Wait:
        args = [
            _number(rules.margin),
            _number(rules.lost_after),
            _number(rules.spacing),
            _number(rules.recheck),
            _number(rules.longest + 1.0),
            _number(self._ttl(rules)),
            str(rules.burst),
        ]
        for requests, seconds in rules.limits:
            args += [str(requests), _number(seconds)]
        reply = await self._run(self._admit, self._keys(key), args)
        admitted, value, flag = cast("tuple[int, bytes, int]", reply)
        if admitted == 1:
            return Admitted(value.decode(), probe=flag == 1)
        return Wait(float(value), for_probe=flag == 1)

    async def report(self, key: str, rules: GateRules, answer: Answer) -> float:
        hold = answer.hold
        if hold is None:
            held = ""
        elif hold.seconds is None:
            held = "cooldown"
        else:
            held = _number(hold.seconds)
        args = [
            answer.ticket or "",
            "1" if answer.conclusive else "0",
            held,
            _number(self._ttl(rules)),
            *(_number(seconds) for seconds in rules.cooldowns),
        ]
        held_for = await self._run(self._report, self._keys(key), args)
        return float(cast("bytes", held_for))

    async def aclose(self) -> None:
        await self._client.aclose()
