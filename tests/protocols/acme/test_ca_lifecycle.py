"""ACME against a disabled or revoked issuing CA: newOrder answers with a problem document."""

from __future__ import annotations

import pytest

from server.ca.types import Principal, RevocationReason
from tests.protocols.acme.conftest import AcmeEnv
from tests.protocols.acme.support import AcmeClient

OP = Principal("operator", "test")


@pytest.mark.parametrize("change", ["disable", "revoke"])
async def test_new_order_refused_while_the_ca_may_not_issue(
    acme_env: AcmeEnv, acme: AcmeClient, change: str
) -> None:
    if change == "disable":
        await acme_env.engine.disable_ca("issuing", actor=OP)
    else:
        await acme_env.engine.revoke_ca("issuing", reason=RevocationReason.UNSPECIFIED, actor=OP)
    reply = await acme.new_order("host.internal")
    assert reply.status == 403, reply.body
    assert reply.problem_type == "unauthorized"
    assert f"ca.state: CA issuing is {change}d" in reply.json()["detail"]
    if change == "disable":
        await acme_env.engine.enable_ca("issuing", actor=OP)
        assert (await acme.new_order("host.internal")).status == 201
