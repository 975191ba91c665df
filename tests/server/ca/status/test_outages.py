"""Revocation services through a storage outage: answers held back are signed when it ends."""

from __future__ import annotations

import logging

import pytest

from server.ca import health, keys
from server.ca.errors import StorageUnavailableError
from server.ca.status import ports as status_ports
from server.ca.types import RevocationReason
from tests.server.ca.status.test_responder import OP, Env


class _Flaky:
    """Wraps ``put_response``: raises the outage error while ``down`` is set."""

    def __init__(self, env: Env) -> None:
        self.down = False
        self._put = env.store.put_response

    async def put_response(self, stored: status_ports.StoredResponse) -> None:
        if self.down:
            raise StorageUnavailableError()
        await self._put(stored)


async def test_answers_not_stored_during_an_outage_are_signed_when_it_ends(
    key_backend: keys.Pkcs8KeyBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(key_backend)
    await env.hierarchy()
    ca_id = (await env.engine.get_ca("issuing")).id
    flaky = _Flaky(env)
    monkeypatch.setattr(env.store, "put_response", flaky.put_response)
    flaky.down = True
    issued = await env.leaf()  # stored; its pre-signing meets the outage
    assert await env.store.get_response(ca_id, issued.serial_number) is None  # type: ignore[arg-type]
    revoked = await env.leaf()
    flaky.down = False
    assert await env.status.sign_pending() == 2
    flaky.down = True
    await env.engine.revoke(
        revoked.serial_number, principal=OP, reason=RevocationReason.KEY_COMPROMISE
    )
    with pytest.raises(StorageUnavailableError):
        await env.status.sign_pending()  # still down: kept for the next round
    flaky.down = False
    assert await env.status.sign_pending() == 1
    good = await env.store.get_response(ca_id, issued.serial_number)  # type: ignore[arg-type]
    bad = await env.store.get_response(ca_id, revoked.serial_number)  # type: ignore[arg-type]
    assert good is not None
    assert good.cert_status == "good"
    assert bad is not None
    assert bad.cert_status == "revoked"
    assert await env.status.sign_pending() == 0


def test_loop_health_logs_an_outage_once_and_its_end(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.loop")
    loop = health.LoopHealth("poll", log)
    caplog.set_level(logging.INFO, logger="test.loop")
    for _ in range(10):
        loop.failed(StorageUnavailableError())
    loop.succeeded()
    loop.succeeded()
    loop.failed(StorageUnavailableError())
    loop.failed(RuntimeError("bug"))
    loop.failed(RuntimeError("bug"))
    messages = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert messages == [
        ("WARNING", "poll: storage unavailable; retrying until it is back", False),
        ("INFO", "poll: storage is back", False),
        ("WARNING", "poll: storage unavailable; retrying until it is back", False),
        ("ERROR", "poll failed", True),
        ("ERROR", "poll failed", True),
    ]
