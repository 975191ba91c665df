"""EST labels: names, the built-in default, stored labels and their validation, config labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.ca import api
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.est import labels
from server.config import EstSettings
from server.store.est_memory import MemoryEstRepository
from tests.server.ca.est.conftest import OP


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        pytest.param("factory-1", True, id="ok/plain"),
        pytest.param("a.b_c", True, id="ok/dots"),
        pytest.param("simpleenroll", False, id="fail/operation-name"),
        pytest.param("-x", False, id="fail/leading-dash"),
        pytest.param("x" * 65, False, id="fail/too-long"),
        pytest.param("a/b", False, id="fail/slash"),
        pytest.param("", False, id="fail/empty"),
    ],
)
def test_label_names(name: str, ok: bool) -> None:
    assert labels.is_valid_label_name(name) is ok


async def test_labels_crud_and_default(
    service: est_api.EstService, est_repo: MemoryEstRepository
) -> None:
    found = await service.list_labels()
    assert [lb.name for lb in found] == ["default"]
    assert found[0].source == "built-in"
    assert found[0].profile == "device"
    await service.add_label(
        est_api.EstLabel(
            name="factory",
            ca="issuing",
            profile="tls-client",
            approval_required=True,
            csrattrs=(est_api.CsrAttr("1.2.3", ("1.2.4",)),),
        ),
        actor=OP,
    )
    got = await service.get_label("factory")
    assert got.ca == "issuing"
    assert got.profile == "tls-client"
    assert got.approval_required
    assert got.csrattrs == (est_api.CsrAttr("1.2.3", ("1.2.4",)),)
    with pytest.raises(EngineError) as err:
        await service.add_label(est_api.EstLabel(name="factory"), actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    await service.add_user("factory", "station-1", "long-enough-pw", actor=OP)
    await service.remove_label("factory", actor=OP)
    assert await service.list_users("factory") == []
    with pytest.raises(EngineError) as err:
        await service.remove_label("factory", actor=OP)
    assert err.value.kind is ProblemKind.NOT_FOUND
    assert [e.action for e in est_repo.audit] == [
        "est.label-add",
        "est.user-add",
        "est.label-remove",
    ]


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        pytest.param(
            est_api.EstLabel(name="p", profile="nope"),
            ProblemKind.INVALID_PROFILE,
            id="fail/profile",
        ),
        pytest.param(est_api.EstLabel(name="c", ca="ghost"), ProblemKind.NOT_FOUND, id="fail/ca"),
        pytest.param(est_api.EstLabel(name="fullcmc"), ProblemKind.MALFORMED, id="fail/name"),
        pytest.param(
            est_api.EstLabel(name="a", auth_modes=frozenset()),
            ProblemKind.MALFORMED,
            id="fail/no-auth",
        ),
        pytest.param(
            est_api.EstLabel(
                name="t",
                trust_anchors_pem=b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n",
            ),
            ProblemKind.MALFORMED,
            id="fail/anchors",
        ),
    ],
)
async def test_bad_labels_refused(
    service: est_api.EstService, label: est_api.EstLabel, kind: ProblemKind
) -> None:
    with pytest.raises(EngineError) as err:
        await service.add_label(label, actor=OP)
    assert err.value.kind is kind
    assert [lb.name for lb in await service.list_labels()] == ["default"]


def test_config_labels(tmp_path: Path) -> None:
    anchor = tmp_path / "anchor.pem"
    anchor.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = EstSettings.model_validate(
        {
            "labels": {
                "factory": {
                    "ca": "issuing",
                    "auth": ["cert"],
                    "trust_anchors": [str(anchor)],
                    "csrattrs": ["1.2.840.113549.1.9.7", "1.2.840.10045.2.1=1.3.132.0.34"],
                }
            },
            "trusted_proxies": ["10.0.0.0/8"],
        }
    )
    (label,) = settings.to_labels().values()
    assert label.auth_modes == frozenset({est_api.AuthMode.CERT})
    assert label.csrattrs == (
        est_api.CsrAttr("1.2.840.113549.1.9.7"),
        est_api.CsrAttr("1.2.840.10045.2.1", ("1.3.132.0.34",)),
    )
    assert label.trust_anchors_pem.startswith(b"-----BEGIN")
    with pytest.raises(ValueError, match="auth modes"):
        EstSettings.model_validate({"labels": {"x": {"auth": ["token"]}}})
    with pytest.raises(ValueError, match="does not appear to be"):
        EstSettings.model_validate({"trusted_proxies": ["not-a-cidr"]})


async def test_config_label_wins_and_cannot_be_stored(
    service: est_api.EstService, engine: api.CAEngine, est_repo: MemoryEstRepository
) -> None:
    configured = est_api.EstLabel(name="factory", ca="issuing", source="config")
    with_config = est_api.EstService(engine, est_repo, config_labels={"factory": configured})
    assert await with_config.get_label("factory") is configured
    with pytest.raises(EngineError) as err:
        await with_config.add_label(est_api.EstLabel(name="factory"), actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    assert est_repo.labels == {}
    assert [lb.name for lb in await with_config.list_labels()] == ["default", "factory"]


async def test_label_cache_follows_own_writes(service: est_api.EstService) -> None:
    with pytest.raises(EngineError) as err:
        await service.get_label("late")  # remembered as missing for a few seconds...
    assert err.value.kind is ProblemKind.NOT_FOUND
    await service.add_label(est_api.EstLabel(name="late"), actor=OP)
    assert (await service.get_label("late")).name == "late"  # ...but not past our own add
    await service.remove_label("late", actor=OP)
    with pytest.raises(EngineError):
        await service.get_label("late")
