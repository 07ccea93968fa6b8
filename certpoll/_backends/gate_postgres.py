"""``postgresql://…``: the gate's state in PostgreSQL, each step one statement on its clock.

The rules are those of :mod:`certpoll._backends.gate_state`, written once more in PL/pgSQL
(as they are in Lua for Redis) so that a step is one function call: one round trip, one
transaction, the key's row lock held only while the server runs the function. The function
takes the lock (an upsert, so the first process creates the row), reads
``clock_timestamp()`` after the lock is held, decides and writes the row. Time is the
server's: replicas with skewed clocks share one limit.

The schema is versioned by name: table ``certpoll_gate_v1``, functions
``certpoll_gate_row_v1``, ``certpoll_gate_admit_v1`` and ``certpoll_gate_report_v1``,
installed (or replaced by the same text) when a process connects. A change to the rules or
the row ships as ``_v2`` beside them, so a process of the old version never runs the new
rules on its rows.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .gate import EPSILON, MIN_WAIT, Admitted, Answer, GateRules, Wait, unreachable
from .urls import BackendURL

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresGate"]

#: Bounded waits on the server: connecting, and any one statement.
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 5.0
#: Connections per process: a step holds one for a single round trip.
POOL_SIZE = 4

_TABLE = """
CREATE TABLE IF NOT EXISTS certpoll_gate_v1 (
  key text PRIMARY KEY,
  -- effective answer times of the hits that may still count (any order)
  answered float8[] NOT NULL DEFAULT '{}',
  -- the hits awaiting their answer, oldest first: tickets and admission times
  tickets text[] NOT NULL DEFAULT '{}',
  admitted float8[] NOT NULL DEFAULT '{}',
  paced_at float8 NOT NULL DEFAULT '-infinity',
  cooling boolean NOT NULL DEFAULT false,
  not_before float8 NOT NULL DEFAULT '-infinity',
  strikes integer NOT NULL DEFAULT 0,
  probe text,
  probe_deadline float8 NOT NULL DEFAULT '-infinity',
  issued bigint NOT NULL DEFAULT 0
)
"""

# Formatted with two constants of ours, never with input.
# The key's row, locked: an upsert, so the first process creates it. The clock is read
# after this returns, once the lock is held.
_ROW = """
CREATE OR REPLACE FUNCTION certpoll_gate_row_v1(p_key text) RETURNS certpoll_gate_v1
LANGUAGE sql AS $$
  INSERT INTO certpoll_gate_v1 AS t (key) VALUES (p_key)
    ON CONFLICT (key) DO UPDATE SET key = t.key RETURNING t.*
$$
"""

_ADMIT = f"""
CREATE OR REPLACE FUNCTION certpoll_gate_admit_v1(
  p_key text, p_margin float8, p_lost float8, p_spacing float8, p_burst integer,
  p_recheck float8, p_keep float8, p_requests integer[], p_seconds float8[],
  OUT admitted boolean, OUT ticket text, OUT wait float8, OUT probe boolean
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  g certpoll_gate_v1;
  now float8;
  span float8;
  counted integer;
  excess integer;
  edge float8;
BEGIN
  g := certpoll_gate_row_v1(p_key);
  now := extract(epoch FROM clock_timestamp());
  admitted := false;
  probe := false;
  -- A hit whose answer never came counts as answered lost_after after its admission.
  WHILE cardinality(g.admitted) > 0 AND g.admitted[1] + p_lost < now LOOP
    g.answered := g.answered || (g.admitted[1] + p_lost);
    g.tickets := g.tickets[2:];
    g.admitted := g.admitted[2:];
  END LOOP;
  IF g.probe IS NOT NULL AND now > g.probe_deadline THEN
    g.probe := NULL;
  END IF;
  g.answered := ARRAY(SELECT a FROM unnest(g.answered) a WHERE a >= now - p_keep);
  IF g.cooling AND now < g.not_before THEN
    wait := greatest(g.not_before - now, {MIN_WAIT!r});
  ELSIF g.cooling AND g.probe IS NOT NULL THEN
    wait := p_recheck;
    probe := true;
  ELSE
    -- The pace: up to burst ahead of the schedule, one spacing per admission.
    wait := 0;
    IF p_spacing > 0 THEN
      wait := g.paced_at - p_spacing * (p_burst - 1) - now;
      IF wait <= {EPSILON!r} THEN wait := 0; END IF;
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_requests), 0) LOOP
      span := p_seconds[i] + p_margin + {EPSILON!r};
      SELECT count(*) INTO counted FROM unnest(g.answered) a WHERE a >= now - span;
      excess := counted + cardinality(g.admitted) - p_requests[i] + 1;
      IF excess > 0 AND excess <= counted THEN
        SELECT a INTO edge FROM unnest(g.answered) a WHERE a >= now - span
          ORDER BY a OFFSET excess - 1 LIMIT 1;
        wait := greatest(wait, edge + span - now);
      ELSIF excess > 0 THEN
        -- Waiting on answers yet to come: none can free its place sooner than this.
        wait := greatest(wait, span);
      END IF;
    END LOOP;
    IF wait > 0 THEN
      wait := greatest(wait, {MIN_WAIT!r});
    ELSE
      admitted := true;
      probe := g.cooling;
      g.issued := g.issued + 1;
      ticket := g.issued::text;
      g.tickets := g.tickets || ticket;
      g.admitted := g.admitted || now;
      g.paced_at := greatest(g.paced_at, now) + p_spacing;
      IF g.cooling THEN
        g.probe := ticket;
        g.probe_deadline := now + p_lost;
      END IF;
    END IF;
  END IF;
  UPDATE certpoll_gate_v1 SET
    answered = g.answered, tickets = g.tickets, admitted = g.admitted,
    paced_at = g.paced_at, probe = g.probe, probe_deadline = g.probe_deadline,
    issued = g.issued
  WHERE key = p_key;
END
$$
"""  # noqa: S608

_REPORT = """
CREATE OR REPLACE FUNCTION certpoll_gate_report_v1(
  p_key text, p_ticket text, p_conclusive boolean, p_held boolean, p_hold float8,
  p_cooldowns float8[]
) RETURNS float8 LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  g certpoll_gate_v1;
  now float8;
  found_at integer;
  is_probe boolean;
BEGIN
  g := certpoll_gate_row_v1(p_key);
  now := extract(epoch FROM clock_timestamp());
  found_at := array_position(g.tickets, p_ticket);
  IF found_at IS NOT NULL THEN
    g.tickets := g.tickets[:found_at - 1] || g.tickets[found_at + 1:];
    g.admitted := g.admitted[:found_at - 1] || g.admitted[found_at + 1:];
    g.answered := g.answered || now;
  END IF;
  is_probe := p_ticket IS NOT NULL AND p_ticket = g.probe;
  IF p_held THEN
    IF is_probe THEN
      g.strikes := g.strikes + 1;
    ELSIF NOT g.cooling THEN
      g.cooling := true;
      g.strikes := 0;
      g.not_before := now;
    END IF;
    g.not_before := greatest(g.not_before, now + coalesce(
      p_hold, p_cooldowns[least(g.strikes, cardinality(p_cooldowns) - 1) + 1]));
  END IF;
  IF is_probe THEN
    g.probe := NULL;
    IF p_conclusive AND NOT p_held THEN
      g.cooling := false;
      g.strikes := 0;
      g.not_before := '-infinity';
    END IF;
  END IF;
  UPDATE certpoll_gate_v1 SET
    answered = g.answered, tickets = g.tickets, admitted = g.admitted,
    cooling = g.cooling, not_before = g.not_before, strikes = g.strikes, probe = g.probe
  WHERE key = p_key;
  IF g.cooling THEN
    RETURN greatest(0, g.not_before - now);
  END IF;
  RETURN 0;
END
$$
"""

_CALL_ADMIT = "SELECT * FROM certpoll_gate_admit_v1($1, $2, $3, $4, $5, $6, $7, $8, $9)"
_CALL_REPORT = "SELECT certpoll_gate_report_v1($1, $2, $3, $4, $5, $6)"


class PostgresGate:
    """Gate state per key, one row each, in a PostgreSQL table ``certpoll_gate_v1``."""

    def __init__(self, url: BackendURL) -> None:
        self._url = url
        self.name = url.redacted
        self._pool: asyncpg.Pool | None = None
        self._connecting = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresGate({self.name!r})"

    async def _connect(self) -> asyncpg.Pool:
        async with self._connecting:
            if self._pool is None:
                self._pool = await self._open()
        return self._pool

    async def _open(self) -> asyncpg.Pool:
        import asyncpg

        pool = await asyncpg.create_pool(
            self._url.url,
            min_size=1,
            max_size=POOL_SIZE,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
        )
        try:
            async with pool.acquire() as connection, connection.transaction():
                # Two processes installing the schema at once would collide: take turns.
                await connection.execute("SELECT pg_advisory_xact_lock(hashtext('certpoll_gate'))")
                for statement in (_TABLE, _ROW, _ADMIT, _REPORT):
                    await connection.execute(statement)
        except BaseException:
            await pool.close()
            raise
        return pool

    async def _call(self, query: str, *args: object) -> asyncpg.Record:
        """Run one of the step functions: one statement, so one round trip."""
        import asyncpg

        try:
            pool = await self._connect()
            row = await pool.fetchrow(query, *args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise unreachable(self._url, exc) from exc
        assert row is not None  # a function call always returns its row
        return row

    async def admit(self, key: str, rules: GateRules) -> Admitted | Wait:
        row = await self._call(
            _CALL_ADMIT,
            key,
            rules.margin,
            rules.lost_after,
            rules.spacing,
            rules.burst,
            rules.recheck,
            rules.longest + 1.0,
            [requests for requests, _ in rules.limits],
            [seconds for _, seconds in rules.limits],
        )
        admitted, ticket, wait, probe = row
        if admitted:
            return Admitted(ticket, probe=probe)
        return Wait(wait, for_probe=probe)

    async def report(self, key: str, rules: GateRules, answer: Answer) -> float:
        hold = answer.hold
        row = await self._call(
            _CALL_REPORT,
            key,
            answer.ticket,
            answer.conclusive,
            hold is not None,
            None if hold is None else hold.seconds,
            list(rules.cooldowns),
        )
        held_for: float = row[0]
        return held_for

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
