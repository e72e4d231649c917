"""The unit of work: how every entry point (the API, the background jobs and `pos` commands
now, the console next) runs a use case, and the only place a unit's transaction is opened.
The jobs act as SYSTEM, `pos` commands as CLI: the service itself, with no calling key.

`Units.read` and `Units.write` take one pooled connection, read the clock once, name the
unit after its use case (every log line of it says which) and hand the use case a `ReadTx`
or a `Tx`; a write runs in one transaction that commits when the use case returns. A use case
that records anything takes a `Tx`, so mypy refuses to run it in a reading unit.

`Units.write_once` is a write with an Idempotency-Key (SPEC section 6), and the key is part
of its unit: the lock on (caller, key), the lookup of a stored answer, the change and the
answer to store commit together in one transaction, so a stored answer exists if and only if
the change it describes committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload
from uuid import UUID

import structlog

from service.clock import Clock
from service.db import Connection, Pool
from service.domain.access import Principal
from service.domain.stays import Policy
from service.errors import Conflict, Problem, Unprocessable
from service.queries import idempotency
from service.usecases.tx import ReadTx, Tx

R = TypeVar("R")
A = TypeVar("A")
P = ParamSpec("P")
T_contra = TypeVar("T_contra", bound=ReadTx, contravariant=True)
R_co = TypeVar("R_co", covariant=True)

# Answers that invite a retry are not stored, so a retry with the same key runs again.
_RETRYABLE = frozenset({409, 429})
# The headers a replay repeats.
_KEPT_HEADERS = ("Location", "ETag")


class UseCase(Generic[T_contra, R_co]):
    """A use case with its arguments, waiting for its unit of work: `UseCase(bookings.hold,
    command, policy=policy)`. Typed by the unit it needs: a use case whose first parameter is
    a `Tx` makes a `UseCase[Tx, ...]`, which `Units.read` refuses (mypy says so), while one
    that takes a `ReadTx` runs in either."""

    def __init__(
        self,
        use_case: Callable[Concatenate[T_contra, P], Awaitable[R_co]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None:
        self.name = _name(use_case)
        self._use_case = use_case
        self._args = args
        self._kwargs = kwargs

    def __call__(self, tx: T_contra) -> Awaitable[R_co]:
        return self._use_case(tx, *self._args, **self._kwargs)


@dataclass(frozen=True)
class Origin:
    """Who asks (None: the service itself, named by `on_behalf`) and which request asked."""

    who: Principal | None
    request_id: str | None = None
    on_behalf: str = "system"


# The service itself, with no HTTP request: the background jobs act as "system", `pos`
# commands as "cli" (their records name them so).
SYSTEM = Origin(None)
CLI = Origin(None, on_behalf="cli")


@dataclass(frozen=True)
class Answer:
    """What an entry point answered, as kept for a retry with the same Idempotency-Key.

    `stored` is what a replay shows when it must differ from the first answer (a secret is
    shown once); `booking_id` makes a replay show that booking as it is then, and as the
    caller may see it then, instead of a stored body.
    """

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    stored: bytes | None = None
    booking_id: UUID | None = None
    replayed: bool = False


@dataclass(frozen=True)
class Once:
    """An Idempotency-Key: the key, a fingerprint of the request it came with, how a refusal
    is answered, and how a stored booking answer is shown again."""

    key: str
    fingerprint: bytes
    refused: Callable[[Problem], Answer]
    replay: Callable[[Tx, UUID], Awaitable[bytes]] | None = None


def storable(status: int) -> bool:
    return status not in _RETRYABLE and status < 500


def _name(use_case: Callable[..., Any]) -> str:
    """How log lines name a unit: its use case, as `bookings.hold`."""
    module = getattr(use_case, "__module__", "") or ""
    return f"{module.removeprefix('service.usecases.')}.{use_case.__qualname__}"


class Units:
    """Runs use cases, each in a unit of work of its own. Built once, at start."""

    def __init__(
        self, pool: Pool, clock: Clock, policy: Policy, *, idempotency_ttl: timedelta
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.policy = policy
        self.idempotency_ttl = idempotency_ttl

    async def read(self, origin: Origin, use_case: UseCase[ReadTx, R]) -> R:
        """A use case that reads nothing personal and records nothing: one statement at a
        time, no transaction around them."""
        with structlog.contextvars.bound_contextvars(unit=use_case.name):
            async with self.pool.acquire() as conn:
                return await use_case(self._read_tx(conn, origin))

    @overload
    async def write(self, origin: Origin, use_case: UseCase[Tx, R]) -> R: ...

    @overload
    async def write(
        self, origin: Origin, use_case: UseCase[Tx, R], present: Callable[[R], A]
    ) -> A: ...

    async def write(
        self,
        origin: Origin,
        use_case: UseCase[Tx, R],
        present: Callable[[R], A] | None = None,
    ) -> R | A:
        """A use case that changes state or reads personal data (and audits the read): one
        transaction, which commits when it returns. `present` runs inside it, so an answer
        that cannot be made undoes the change."""
        with structlog.contextvars.bound_contextvars(unit=use_case.name):
            async with self.pool.acquire() as conn, conn.transaction():
                result = await use_case(self._tx(conn, origin))
                return result if present is None else present(result)

    async def write_once(
        self,
        origin: Origin,
        once: Once,
        use_case: UseCase[Tx, R] | Problem,
        present: Callable[[R], Answer],
    ) -> Answer:
        """`write` under an Idempotency-Key: the first answer is stored with the change and
        replayed to a retry with the same key and request; the key with another request is
        422, and while a request with it runs, 409. `use_case` is the Problem the request was
        refused with before any use case could run (a body that does not parse): that answer
        is stored too.

        A refusal is raised, as without a key; one that is stored (a 4xx other than 409 and
        429) is stored first, in a transaction of its own once the refused change is undone.
        """
        if isinstance(use_case, Problem):
            return await self._refused_once(origin, once, use_case)
        refusal: Problem | None = None
        with structlog.contextvars.bound_contextvars(unit=use_case.name):
            async with self.pool.acquire() as conn:
                tx = self._tx(conn, origin)
                try:
                    async with conn.transaction():
                        stored = await self._claim(tx, once)
                        if stored is not None:
                            return stored
                        try:
                            answer = present(await use_case(tx))
                        except Problem as refused:
                            refusal = refused
                            raise
                        if storable(answer.status):
                            await self._store(tx, once, answer)
                        return answer
                except Problem as problem:
                    if problem is refusal and storable(problem.status):
                        await self._store_refusal(tx, once, problem)
                    raise

    async def _refused_once(self, origin: Origin, once: Once, refusal: Problem) -> Answer:
        """A request refused before any use case ran: its refusal is its answer, stored at
        once (unless a retry may succeed), then raised; or the answer kept for the key."""
        with structlog.contextvars.bound_contextvars(unit="refused"):
            async with self.pool.acquire() as conn, conn.transaction():
                tx = self._tx(conn, origin)
                stored = await self._claim(tx, once)
                if stored is not None:
                    return stored
                if storable(refusal.status):
                    await self._store(tx, once, once.refused(refusal))
        raise refusal

    async def _claim(self, tx: Tx, once: Once) -> Answer | None:
        """Take the key's lock for this transaction; the answer to replay, if one is kept."""
        who = tx.caller
        if not await idempotency.try_lock(tx.conn, who.key_id, once.key):
            raise Conflict(
                "a request with this Idempotency-Key is still being processed; retry shortly",
                slug="idempotency-in-flight",
            )
        row = await idempotency.find(tx.conn, who.key_id, once.key, tx.at - self.idempotency_ttl)
        if row is None:
            return None
        if row["request_hash"] != once.fingerprint:
            raise Unprocessable(
                "this Idempotency-Key was used with a different request",
                slug="idempotency-key-reuse",
            )
        kept = Answer(
            status=row["response_status"],
            body=row["response_body"],
            content_type=row["response_type"],
            headers=row["response_headers"],
            replayed=True,
        )
        booking_id: UUID | None = row["booking_id"]
        if booking_id is not None and once.replay is not None:
            # A booking is shown as it is now and as this caller may see it now: the first
            # answer's status code and id, never an address the caller has lost.
            return replace(kept, body=await once.replay(tx, booking_id))
        return kept

    async def _store(self, tx: Tx, once: Once, answer: Answer) -> None:
        """Keep the answer for the key: a booking's by its id alone (a replay shows it as it is
        then), so no address or personal field is stored."""
        if answer.booking_id is not None:
            body = b""
        else:
            body = answer.body if answer.stored is None else answer.stored
        await idempotency.store(
            tx.conn,
            tx.caller.key_id,
            once.key,
            once.fingerprint,
            answer.status,
            answer.content_type,
            {name: value for name, value in answer.headers.items() if name in _KEPT_HEADERS},
            body,
            tx.at,
            answer.booking_id,
        )

    async def _store_refusal(self, tx: Tx, once: Once, refusal: Problem) -> None:
        """Keep a refusal as the key's answer, unless the key is busy again or answered
        meanwhile (by a retry that ran while the refused change was being undone)."""
        async with tx.conn.transaction():
            if not await idempotency.try_lock(tx.conn, tx.caller.key_id, once.key):
                return
            oldest = tx.at - self.idempotency_ttl
            if await idempotency.find(tx.conn, tx.caller.key_id, once.key, oldest) is not None:
                return
            await self._store(tx, once, once.refused(refusal))

    def _read_tx(self, conn: Connection, origin: Origin) -> ReadTx:
        return ReadTx(
            conn, self.clock.now(), origin.who, origin.request_id, origin.on_behalf, self.policy
        )

    def _tx(self, conn: Connection, origin: Origin) -> Tx:
        return Tx(
            conn, self.clock.now(), origin.who, origin.request_id, origin.on_behalf, self.policy
        )
