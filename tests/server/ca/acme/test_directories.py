"""Named ACME directories in the engine: settings, validation, storage, account binding."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from server.ca import api, grants
from server.ca.acme import types as at
from server.ca.acme.directories import Directories, is_valid_directory_name, settings_for
from server.ca.acme.ports import FetchResult
from server.ca.acme.service import AcmeService
from server.ca.acme.settings import AcmeSettings
from server.ca.errors import EngineError, ProblemKind
from server.store.memory import MemoryAcmeRepository
from tests.server.ca.acme.conftest import OP
from tests.server.ca.acme.support import FakePorts, account_key
from tests.support import FakeClock

CORP = at.AcmeDirectory(
    name="corp",
    ca="corp",
    dns_suffixes=("corp.example",),
    ip_ranges=(ipaddress.ip_network("192.0.2.0/24"),),
    wildcard=False,
)


@pytest.fixture
async def dirs(
    ca: api.CAEngine,
    acme_repo: MemoryAcmeRepository,
    net: FakePorts,
    acme_settings: AcmeSettings,
    clock: FakeClock,
) -> AsyncIterator[Directories]:
    await ca.create_subordinate("corp", parent="root", actor=OP, path_length=0)
    d = Directories(
        ca, acme_repo, ports=net.ports(), settings=acme_settings, config={"corp": CORP}, clock=clock
    )
    yield d
    await d.close()


def test_settings_narrow_the_global_ones() -> None:
    base = AcmeSettings(eab_required=False)
    s = settings_for(CORP, base)
    assert s.directory == "corp"
    assert s.ca == "corp"
    assert s.grant.cas == frozenset({"corp"})
    assert s.grant.dns_suffixes == ("corp.example",)
    assert s.grant.allow_wildcard is False
    assert s.grant.ip_ranges == CORP.ip_ranges
    assert s.grant.profiles == frozenset(base.profiles.values())
    assert s.eab_required is False
    short = at.AcmeDirectory(name="short", ca="corp", profiles=("shortlived",), eab_required=True)
    s = settings_for(short, base)
    assert dict(s.profiles) == {"shortlived": "short-lived"}
    assert s.default_profile == "shortlived"
    assert s.grant.profiles == frozenset({"short-lived"})
    assert s.eab_required is True
    # The defaults: any name the challenges prove, wildcards too.
    s = settings_for(at.AcmeDirectory(name="any", ca="corp"), base)
    assert s.grant.dns_suffixes == (grants.ANY,)
    assert s.grant.allow_wildcard


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("corp", True),
        ("team-a.v2", True),
        ("default", False),
        ("acct", False),
        ("new-order", False),
        ("Corp", False),
        ("", False),
        ("a/b", False),
    ],
    ids=[
        "ok/plain",
        "ok/dots",
        "fail/default",
        "fail/acct",
        "fail/new-order",
        "fail/upper",
        "fail/empty",
        "fail/slash",
    ],
)
def test_directory_names(name: str, ok: bool) -> None:
    assert is_valid_directory_name(name) is ok


@pytest.mark.parametrize(
    ("directory", "kind"),
    [
        (at.AcmeDirectory(name="x", ca="nope"), ProblemKind.NOT_FOUND),
        (at.AcmeDirectory(name="acct", ca="corp"), ProblemKind.MALFORMED),
        (at.AcmeDirectory(name="x", ca="corp", profiles=("gold",)), ProblemKind.INVALID_PROFILE),
        (at.AcmeDirectory(name="x", ca="corp", profiles=()), ProblemKind.INVALID_PROFILE),
        (at.AcmeDirectory(name="x", ca="corp", dns_suffixes=("bad name",)), ProblemKind.MALFORMED),
    ],
    ids=["fail/unknown-ca", "fail/reserved", "fail/profile", "fail/no-profile", "fail/suffix"],
)
async def test_add_refuses_bad_directories(
    dirs: Directories, directory: at.AcmeDirectory, kind: ProblemKind
) -> None:
    with pytest.raises(EngineError) as err:
        await dirs.add(directory, actor=OP)
    assert err.value.kind is kind


async def test_add_list_remove_are_audited(
    dirs: Directories, acme_repo: MemoryAcmeRepository
) -> None:
    team = at.AcmeDirectory(name="team", ca="issuing", dns_suffixes=("team.internal",))
    await dirs.add(team, actor=OP)
    assert await dirs.get("team") == team
    assert [d.name for d in await dirs.list_all()] == ["corp", "team"]
    with pytest.raises(EngineError) as err:
        await dirs.add(team, actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    await dirs.remove("team", actor=OP)
    with pytest.raises(EngineError) as err:
        await dirs.get("team")
    assert err.value.kind is ProblemKind.NOT_FOUND
    actions = [(e.action, e.target, e.detail.get("ca")) for e in acme_repo.audit]
    assert actions == [
        ("acme.directory-add", "team", "issuing"),
        ("acme.directory-remove", "team", None),
    ]
    with pytest.raises(EngineError) as err:
        await dirs.remove("team", actor=OP)
    assert err.value.kind is ProblemKind.NOT_FOUND


async def test_config_directories_win_over_stored_ones(
    dirs: Directories, acme_repo: MemoryAcmeRepository
) -> None:
    with pytest.raises(EngineError) as err:
        await dirs.add(at.AcmeDirectory(name="corp", ca="issuing"), actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    acme_repo.directories["corp"] = at.AcmeDirectory(name="corp", ca="issuing")
    assert (await dirs.get("corp")).ca == "corp"
    assert [d.ca for d in await dirs.list_all()] == ["corp"]


async def test_config_check_names_the_directory(
    ca: api.CAEngine, acme_repo: MemoryAcmeRepository, net: FakePorts
) -> None:
    bad = Directories(
        ca,
        acme_repo,
        ports=net.ports(),
        settings=AcmeSettings(),
        config={"gone": at.AcmeDirectory(name="gone", ca="nope")},
    )
    with pytest.raises(EngineError) as err:
        await bad.check_config()
    assert "acme.directories.gone" in err.value.detail


async def test_one_service_per_directory_definition(dirs: Directories) -> None:
    first = await dirs.service("corp")
    assert await dirs.service("corp") is first
    assert first.settings.ca == "corp"
    assert first.settings.directory == "corp"
    with pytest.raises(EngineError) as err:
        await dirs.service("unknown")
    assert err.value.kind is ProblemKind.NOT_FOUND


async def test_accounts_are_bound_to_their_directory(
    dirs: Directories, service: AcmeService
) -> None:
    corp = await dirs.service("corp")
    acct, created = await corp.accounts.new_account(account_key("alice"))
    assert created
    assert acct.directory == "corp"
    assert (await corp.account(acct.id)).id == acct.id
    with pytest.raises(EngineError) as err:
        await service.account(acct.id)
    assert err.value.kind is ProblemKind.ACCOUNT_DOES_NOT_EXIST
    assert await service.accounts.find_account(acct.key.thumbprint) is None
    with pytest.raises(EngineError) as err:
        await service.accounts.new_account(account_key("alice"))
    assert err.value.kind is ProblemKind.UNAUTHORIZED
    # The default directory's accounts are "default" ones.
    bob, _ = await service.accounts.new_account(account_key("bob"))
    assert bob.directory == at.DEFAULT_DIRECTORY


@pytest.mark.parametrize(
    ("ident", "rule"),
    [
        (("dns", "www.other.example"), "grant.dns-suffix"),
        (("dns", "*.corp.example"), "grant.wildcard"),
        (("ip", "198.51.100.7"), "grant.ip-range"),
    ],
    ids=["fail/suffix", "fail/wildcard", "fail/ip-range"],
)
async def test_directory_grant_refuses_identifiers(
    dirs: Directories, ident: tuple[str, str], rule: str
) -> None:
    corp = await dirs.service("corp")
    acct, _ = await corp.accounts.new_account(account_key("carol"))
    with pytest.raises(EngineError) as err:
        await corp.orders.new_order(acct, [ident])
    assert err.value.kind is ProblemKind.REJECTED_IDENTIFIER
    assert rule in err.value.detail
    order = await corp.orders.new_order(acct, [("dns", "www.corp.example"), ("ip", "192.0.2.7")])
    assert order.status is at.OrderStatus.PENDING


class _RacingRepo(MemoryAcmeRepository):
    """Hides an account from the thumbprint lookup once: another node is inserting it."""

    def __init__(self) -> None:
        super().__init__()
        self.hide_once = False

    async def get_account_by_thumbprint(self, thumbprint: str) -> at.Account | None:
        if self.hide_once:
            self.hide_once = False
            return None
        return await super().get_account_by_thumbprint(thumbprint)


async def test_a_key_raced_onto_another_directory_is_refused(
    ca: api.CAEngine, net: FakePorts, acme_settings: AcmeSettings, clock: FakeClock
) -> None:
    await ca.create_subordinate("corp", parent="root", actor=OP, path_length=0)
    repo = _RacingRepo()
    dirs = Directories(
        ca, repo, ports=net.ports(), settings=acme_settings, config={"corp": CORP}, clock=clock
    )
    default = AcmeService(ca, repo, ports=net.ports(), settings=acme_settings, clock=clock)
    await default.accounts.new_account(account_key("dave"))
    repo.hide_once = True
    with pytest.raises(EngineError) as err:
        await (await dirs.service("corp")).accounts.new_account(account_key("dave"))
    assert err.value.kind is ProblemKind.UNAUTHORIZED
    await dirs.close()
    await default.close()


class _GatedPorts(FakePorts):
    """http-01 fetches wait until ``gate`` is set (validations stay queued)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> FetchResult:
        await self.gate.wait()
        return await super().fetch(address=address, port=port, host=host, path=path)


async def test_every_directory_shares_one_validation_queue(
    ca: api.CAEngine, acme_repo: MemoryAcmeRepository, clock: FakeClock
) -> None:
    # The queue bounds validations per process, not per directory.
    await ca.create_subordinate("corp", parent="root", actor=OP, path_length=0)
    net = _GatedPorts()
    team = replace(CORP, name="team")
    d = Directories(
        ca,
        acme_repo,
        ports=net.ports(),
        settings=AcmeSettings(validation_queue=1),
        config={"corp": CORP, "team": team},
        clock=clock,
    )
    try:
        outcomes = []
        for name in ("corp", "team"):
            svc = await d.service(name)
            acct, _ = await svc.accounts.new_account(account_key(name))
            order = await svc.orders.new_order(acct, [("dns", f"{name}.corp.example")])
            try:
                await svc.orders.respond_challenge(acct, order.authz_ids[0], "http-01")
                outcomes.append("queued")
            except EngineError as err:
                outcomes.append(str(err.kind))
        assert outcomes == ["queued", "rateLimited"]
    finally:
        net.gate.set()
        await d.close()
