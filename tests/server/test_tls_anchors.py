"""ClientAnchors: new trust anchors reach a live TLS context; a failing source is survived."""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest
from cryptography import x509

from server.tls_anchors import ClientAnchors
from tests.protocols.est.conftest import make_external_ca


async def test_run_survives_a_failing_source_and_loads_later_anchors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, _ = make_external_ca("First CA")
    later, _ = make_external_ca("Later CA")
    calls = 0

    async def source() -> list[x509.Certificate]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database away")
        return [first, later]

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    anchors = ClientAnchors(ctx, source, [first])
    task = asyncio.create_task(anchors.run(interval=0.01))
    with caplog.at_level(logging.INFO, logger="server.tls_anchors"):
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(ctx.get_ca_certs()) == 1 and calls >= 2:
                break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Only the anchor not loaded at start was added (the context started empty here).
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "Later CA"),),)]
    assert "keeping the loaded anchors" in caplog.text
    assert "1 new anchor(s) loaded" in caplog.text
