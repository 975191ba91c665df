"""Failed-login budgets and the PBKDF2 bound: the token is taken before the password is checked.

Every test counts the PBKDF2 verifications that actually ran (``users.verify_password_hash``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from datetime import timedelta
from typing import Any, cast

import pytest

from server.ca import api
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.est import users
from server.ca.est.ports import EstRepository
from server.store.database import Database
from server.store.est_memory import MemoryEstRepository
from server.store.est_repository import SqlEstRepository
from tests.server.ca.est.conftest import OP
from tests.support import FakeClock

PASSWORD = "the-right-password"
WRONG = "a-wrong-password"


class Verifications:
    """Counts PBKDF2 checks; optionally holds each one until ``gate`` opens."""

    def __init__(self, *, hold: bool = False) -> None:
        self.calls = 0
        self.running = 0
        self.peak = 0
        self.gate = threading.Event()
        if not hold:
            self.gate.set()
        self._lock = threading.Lock()
        self._real = users.verify_password_hash

    def __call__(self, password: str, stored: str) -> bool:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.gate.wait(10)
            return self._real(password, stored)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Verifications:
    counter = Verifications()
    monkeypatch.setattr(users, "verify_password_hash", counter)
    return counter


@pytest.fixture
async def cas(engine: api.CAEngine) -> api.CAEngine:
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP)
    return engine


@pytest.fixture
async def repo(database: Database) -> EstRepository:
    """The EST repository on SQL (SQLite and PostgreSQL): the budgets live in the database."""
    return SqlEstRepository(database)


def _service(
    engine: api.CAEngine, repo: EstRepository, clock: FakeClock, **limits: Any
) -> est_api.EstService:
    # A loaded CI machine can hold a PBKDF2 slot past the 2 s default; tests of the
    # budgets must not see the verifier-busy refusal (its own test sets check_wait).
    limits.setdefault("check_wait", 60.0)
    return est_api.EstService(engine, repo, clock=clock, login_limits=est_api.LoginLimits(**limits))


async def _login(
    service: est_api.EstService,
    username: str = "dev1",
    password: str = PASSWORD,
    *,
    client: str = "192.0.2.1",
) -> est_api.ClientIdentity | None:
    label = await service.get_label(None)
    return await service.authenticate_password(label, username, password, client=client)


async def _refusal(
    service: est_api.EstService,
    username: str = "dev1",
    password: str = PASSWORD,
    *,
    client: str = "192.0.2.1",
) -> EngineError:
    with pytest.raises(EngineError) as err:
        await _login(service, username, password, client=client)
    return err.value


@pytest.mark.parametrize(
    ("addresses", "accounts"),
    [(1, 1), (25, 1), (1, 25)],
    ids=["one-address-one-account", "many-addresses-one-account", "one-address-many-accounts"],
)
async def test_parallel_wrong_passwords_verify_at_most_the_limit(
    cas: api.CAEngine,
    repo: EstRepository,
    est_clock: FakeClock,
    verifications: Verifications,
    addresses: int,
    accounts: int,
) -> None:
    # A long wait for a PBKDF2 slot: this test is about the budgets, not the CPU bound.
    service = _service(cas, repo, est_clock, per_address=10, per_account=10, check_wait=60)
    await service.add_user("default", "dev0", PASSWORD, actor=OP)
    outcomes = await asyncio.gather(
        *(
            _login(service, f"dev{i % accounts}", WRONG, client=f"198.51.100.{i % addresses}")
            for i in range(25)
        ),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, EngineError)]
    assert [o for o in outcomes if not isinstance(o, EngineError)] == [None] * 10
    assert {e.kind for e in refused} == {ProblemKind.RATE_LIMITED}
    assert len(refused) == 15
    assert all(e.retry_after is not None and e.retry_after >= 1 for e in refused)
    assert verifications.calls == 10


async def test_two_services_on_one_database_share_the_budgets(
    cas: api.CAEngine, database: Database, est_clock: FakeClock, verifications: Verifications
) -> None:
    # A second Database on the same URL: its own pool and (SQLite) write lock, as a second node.
    other_db = Database(database.url)
    try:
        one = _service(cas, SqlEstRepository(database), est_clock, per_address=100, per_account=4)
        two = _service(cas, SqlEstRepository(other_db), est_clock, per_address=100, per_account=4)
        await one.add_user("default", "dev1", PASSWORD, actor=OP)
        outcomes = await asyncio.gather(
            *(
                _login(node, "dev1", WRONG, client=f"198.51.100.{i}")
                for i, node in enumerate([one, two] * 5)
            ),
            return_exceptions=True,
        )
        assert outcomes.count(None) == 4
        assert verifications.calls == 4
        # Either node refuses even the right password until a token refills (15 s at 4/min).
        for node in (one, two):
            assert (await _refusal(node, client="203.0.113.7")).kind is ProblemKind.RATE_LIMITED
        est_clock.advance(timedelta(seconds=15))
        assert await _login(two, client="203.0.113.7") is not None
    finally:
        await other_db.close()


async def test_account_and_address_budgets_are_independent(
    cas: api.CAEngine, repo: EstRepository, est_clock: FakeClock, verifications: Verifications
) -> None:
    service = _service(cas, repo, est_clock, per_address=5, per_account=3)
    for name in ("dev1", "dev2", "dev3"):
        await service.add_user("default", name, PASSWORD, actor=OP)
    nat = "192.0.2.1"
    # One device behind the NAT guesses dev1: the account locks after 3 ...
    assert [await _login(service, "dev1", WRONG, client=nat) for _ in range(3)] == [None] * 3
    locked = await _refusal(service, "dev1", WRONG, client=nat)
    assert locked.kind is ProblemKind.RATE_LIMITED
    assert locked.detail == "too many failed logins for this account; try again later"
    assert locked.retry_after == 20  # 3 a minute: one token every 20 s
    # ... for everyone, from every address, right password or not ...
    assert (await _refusal(service, "dev1", client=nat)).kind is ProblemKind.RATE_LIMITED
    assert (await _refusal(service, "dev1", client="203.0.113.9")).kind is ProblemKind.RATE_LIMITED
    assert verifications.calls == 3
    # ... but the refused attempts took nothing from the NAT's address budget (2 left of 5),
    # so the other devices there still log in.
    assert await _login(service, "dev2", client=nat) is not None
    assert await _login(service, "dev3", client=nat) is not None
    # Spraying other accounts from one address spends the address budget: then that
    # address waits, for every account, while other addresses do not.
    assert await _login(service, "ghost1", WRONG, client="198.51.100.7") is None
    for n in range(2, 6):
        assert await _login(service, f"ghost{n}", WRONG, client="198.51.100.7") is None
    sprayed = await _refusal(service, "dev2", client="198.51.100.7")
    assert sprayed.detail == "too many failed logins for this client address; try again later"
    assert sprayed.retry_after == 12  # 5 a minute
    assert await _login(service, "dev2", client="203.0.113.9") is not None
    # The account refills at its own rate.
    est_clock.advance(timedelta(seconds=20))
    assert await _login(service, "dev1", client=nat) is not None


async def test_a_right_password_gives_the_token_back(
    cas: api.CAEngine, repo: EstRepository, est_clock: FakeClock, verifications: Verifications
) -> None:
    service = _service(cas, repo, est_clock, per_address=3, per_account=3)
    await service.add_user("default", "dev1", PASSWORD, actor=OP)
    assert await _login(service, "dev1", WRONG) is None
    assert await _login(service, "dev1", WRONG) is None
    assert await _login(service, "dev1") is not None  # took the third token, gave it back
    assert await _login(service, "dev1", "another-wrong-password") is None
    assert (await _refusal(service, "dev1", "yet-another-wrong")).kind is ProblemKind.RATE_LIMITED
    assert verifications.calls == 4


async def test_a_cached_login_waits_out_a_lockout(
    cas: api.CAEngine, repo: EstRepository, est_clock: FakeClock, verifications: Verifications
) -> None:
    service = _service(cas, repo, est_clock, per_address=30, per_account=2)
    await service.add_user("default", "dev1", PASSWORD, actor=OP)
    assert await _login(service) is not None
    assert await _login(service) is not None
    assert verifications.calls == 1  # the second login came from the cache
    for n in range(2):
        assert await _login(service, "dev1", WRONG, client=f"203.0.113.{n}") is None
    # The remembered password does not skip the lockout it would otherwise outlive.
    refused = await _refusal(service)
    assert refused.kind is ProblemKind.RATE_LIMITED
    assert refused.retry_after == 30
    assert verifications.calls == 3
    est_clock.advance(timedelta(seconds=30))
    assert await _login(service) is not None
    assert verifications.calls == 3


class CountingRepository:
    """An EST repository that counts the calls made to it, by method name."""

    def __init__(self, inner: EstRepository) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await method(*args, **kwargs)

        return counted


async def test_a_cached_login_reads_the_budgets_once_and_writes_nothing(
    cas: api.CAEngine, repo: EstRepository, est_clock: FakeClock, verifications: Verifications
) -> None:
    """A remembered password costs one read of both buckets, not a take and a give-back."""
    counting = CountingRepository(repo)
    service = _service(cas, cast(EstRepository, counting), est_clock, per_address=30, per_account=5)
    await service.add_user("default", "dev1", PASSWORD, actor=OP)
    label = await service.get_label(None)
    counting.calls.clear()
    assert await service.authenticate_password(label, "dev1", PASSWORD, client="192.0.2.1")
    # The first login checks PBKDF2 between taking and giving back the tokens.
    assert counting.calls == {"take_login_tokens": 1, "get_user": 1, "return_login_tokens": 1}
    counting.calls.clear()
    for _ in range(3):
        assert await service.authenticate_password(label, "dev1", PASSWORD, client="192.0.2.1")
    assert counting.calls == {"get_login_budgets": 3}
    assert verifications.calls == 1


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Verifications:
    counter = Verifications(hold=True)
    monkeypatch.setattr(users, "verify_password_hash", counter)
    return counter


async def test_pbkdf2_checks_at_once_are_bounded(
    cas: api.CAEngine, est_clock: FakeClock, held: Verifications
) -> None:
    repo = MemoryEstRepository()
    service = _service(
        cas, repo, est_clock, per_address=10, per_account=1, concurrent_checks=2, check_wait=0.2
    )
    for n in range(5):
        await service.add_user("default", f"dev{n}", PASSWORD, actor=OP)
    tasks = [asyncio.create_task(_login(service, f"dev{n}")) for n in range(5)]
    try:
        # Three wait 0.2 s for one of the two PBKDF2 slots and are turned away (real time:
        # the bound is on threads actually running).
        await asyncio.sleep(0.5)
        refused = [t for t in tasks if t.done()]
        assert len(refused) == 3
        for task in refused:
            err = task.exception()
            assert isinstance(err, EngineError)
            assert err.kind is ProblemKind.UNAVAILABLE
            assert err.retry_after == 2
        assert held.peak == 2
    finally:
        held.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(o, est_api.ClientIdentity) for o in outcomes) == 2
    assert held.calls == 2
    # A refused check cost no token: with one failed login allowed per account, every
    # refused account still logs in.
    for task, outcome in zip(tasks, outcomes, strict=True):
        if isinstance(outcome, EngineError):
            username = f"dev{tasks.index(task)}"
            assert await _login(service, username) is not None


def test_pbkdf2_slots_default_to_the_cpu_count() -> None:
    assert est_api.LoginLimits().verifier_slots() == (os.cpu_count() or 1)
    assert est_api.LoginLimits(concurrent_checks=3).verifier_slots() == 3


async def test_refilled_budgets_are_pruned(
    cas: api.CAEngine, est_clock: FakeClock, verifications: Verifications
) -> None:
    repo = MemoryEstRepository()
    now = [0.0]
    service = est_api.EstService(
        cas,
        repo,
        clock=est_clock,
        login_limits=est_api.LoginLimits(per_address=5, per_account=5, check_wait=60),
        monotonic=lambda: now[0],
    )
    assert await _login(service, "ghost", WRONG, client="198.51.100.1") is None
    first = set(repo.login_budgets)
    assert len(first) == 2
    est_clock.advance(timedelta(seconds=61))
    now[0] += 61
    assert await _login(service, "ghost", WRONG, client="198.51.100.2") is None
    # The first address's bucket refilled and went (the account's came back with this try).
    assert len(repo.login_budgets) == 2
    assert len(first & set(repo.login_budgets)) == 1
