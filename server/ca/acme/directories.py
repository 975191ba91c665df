"""Named ACME directories (``/acme/<name>/directory``): each with its CA, profiles and policy.

Owns directory names, directories from the config file over stored ones (cached
briefly so every node sees a CLI change), their validation, the settings a
directory's ``AcmeService`` runs on (its CA and its grant, the issuance
pipeline's input) and one ``AcmeService`` per directory. The default directory
(``/acme/directory``, the global ``[acme]`` settings) is not one of these. Must not
import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Final

from server.ca import grants, policy
from server.ca.acme import types as at
from server.ca.acme import validation
from server.ca.acme.ports import AcmeRepository
from server.ca.acme.service import AcmeService
from server.ca.acme.settings import AcmeSettings
from server.ca.acme.workqueue import ValidationQueue
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import Clock, SystemClock
from server.ca.types import AuditEvent, Principal

__all__ = ["Directories", "is_valid_directory_name", "settings_for"]

_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# The default directory's own path segments (and its name) can never name a directory.
_RESERVED: Final = frozenset(
    {
        at.DEFAULT_DIRECTORY,
        "directory",
        "new-nonce",
        "new-account",
        "new-order",
        "new-authz",
        "revoke-cert",
        "key-change",
        "renewal-info",
        "acct",
        "order",
        "authz",
        "chall",
        "cert",
    }
)
_TTL: Final = 5.0
_CACHE_MAX: Final = 1000


def is_valid_directory_name(name: str) -> bool:
    """Return True for a usable directory name (lower-case URL segment, not reserved)."""
    return bool(_NAME_RE.match(name)) and name not in _RESERVED


def settings_for(directory: at.AcmeDirectory, base: AcmeSettings) -> AcmeSettings:
    """Return the settings a directory's service runs on: the global ones, narrowed.

    Its CA, its profiles, EAB, and the grant the issuance pipeline checks every
    order and CSR against (CA subtree, profiles, DNS suffixes, wildcard, IP ranges).
    """
    profiles = (
        dict(base.profiles)
        if directory.profiles is None
        else {p: base.profiles[p] for p in directory.profiles if p in base.profiles}
    )
    default_profile = (
        base.default_profile
        if base.default_profile in profiles
        else next(iter(profiles), base.default_profile)
    )
    grant = grants.Grant(
        cas=frozenset({directory.ca}),
        profiles=frozenset(profiles.values()),
        dns_suffixes=directory.dns_suffixes,
        allow_wildcard=directory.wildcard,
        ip_ranges=directory.ip_ranges,
    )
    return replace(
        base,
        directory=directory.name,
        ca=directory.ca,
        grant=grant,
        profiles=profiles,
        default_profile=default_profile,
        eab_required=base.eab_required
        if directory.eab_required is None
        else directory.eab_required,
    )


class Directories:
    """Named directories from the config file, then storage; one service each."""

    def __init__(
        self,
        engine: CAEngine,
        repo: AcmeRepository,
        *,
        ports: validation.ValidationPorts,
        settings: AcmeSettings,
        config: Mapping[str, at.AcmeDirectory] | None = None,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        queue: ValidationQueue | None = None,
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._ports = ports
        self._base = settings
        self._config = dict(config or {})
        self._clock = clock or SystemClock()
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, at.AcmeDirectory | None]] = {}
        self._services: dict[str, tuple[at.AcmeDirectory, AcmeService]] = {}
        self._retired: list[AcmeService] = []
        # One bounded validation queue for every directory of the process.
        self._queue = (
            queue
            if queue is not None
            else ValidationQueue(
                limit=settings.validation_queue, concurrency=settings.validation_concurrency
            )
        )

    async def get(self, name: str) -> at.AcmeDirectory:
        """Return a named directory (config first, then storage).

        Raises:
            EngineError: NOT_FOUND for an unknown directory.
        """
        configured = self._config.get(name)
        if configured is not None:
            return configured
        now = self._monotonic()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            found = await self._repo.get_directory(name) if is_valid_directory_name(name) else None
            if len(self._cache) > _CACHE_MAX:
                self._cache.clear()
            self._cache[name] = (now + _TTL, found)
        if found is None:
            raise EngineError(ProblemKind.NOT_FOUND, f"no ACME directory {name!r}")
        return found

    async def service(self, name: str) -> AcmeService:
        """Return the ACME service of a named directory (built once per definition).

        Raises:
            EngineError: NOT_FOUND for an unknown directory.
        """
        directory = await self.get(name)
        held = self._services.get(name)
        if held is not None and held[0] == directory:
            return held[1]
        if held is not None:
            self._retired.append(held[1])  # its running validations finish; closed at shutdown
        svc = AcmeService(
            self._engine,
            self._repo,
            ports=self._ports,
            settings=settings_for(directory, self._base),
            clock=self._clock,
            queue=self._queue,
        )
        self._services[name] = (directory, svc)
        return svc

    async def list_all(self) -> list[at.AcmeDirectory]:
        """Return every named directory, config ones winning over stored ones."""
        out = dict(self._config)
        for d in await self._repo.list_directories():
            out.setdefault(d.name, d)
        return [out[k] for k in sorted(out)]

    async def check(self, directory: at.AcmeDirectory) -> None:
        """Validate a directory: its name, its CA (must exist), profiles and suffixes.

        Raises:
            EngineError: MALFORMED, NOT_FOUND (CA), INVALID_PROFILE.
        """
        if not is_valid_directory_name(directory.name):
            raise EngineError(
                ProblemKind.MALFORMED,
                f"directory names are 1-64 lower-case letters, digits, '.', '_' or '-' and not "
                f"{', '.join(sorted(_RESERVED))}: {directory.name!r}",
            )
        await self._engine.get_ca(directory.ca)
        if directory.profiles is not None:
            unknown = [p for p in directory.profiles if p not in self._base.profiles]
            if unknown or not directory.profiles:
                known = ", ".join(sorted(self._base.profiles))
                raise EngineError(
                    ProblemKind.INVALID_PROFILE,
                    f"unknown ACME profile(s) {', '.join(unknown) or '(none given)'} ({known})",
                )
        for suffix in directory.dns_suffixes:
            bare = suffix.strip(".").lower()
            if suffix != grants.ANY and not policy.is_valid_dns_name(bare, allow_wildcard=False):
                raise EngineError(ProblemKind.MALFORMED, f"{suffix!r} is not a DNS suffix")

    async def check_config(self) -> None:
        """Validate every directory of the config file (startup).

        Raises:
            EngineError: as ``check`` names the directory.
        """
        for directory in self._config.values():
            try:
                await self.check(directory)
            except EngineError as exc:
                raise EngineError(
                    exc.kind, f"acme.directories.{directory.name}: {exc.detail}"
                ) from exc

    async def add(self, directory: at.AcmeDirectory, *, actor: Principal) -> None:
        """Store a new directory (audited).

        Raises:
            EngineError: CONFLICT (exists, or defined in the config file), MALFORMED,
                NOT_FOUND (CA), INVALID_PROFILE.
        """
        await self.check(directory)
        if directory.name in self._config:
            raise EngineError(
                ProblemKind.CONFLICT, f"directory {directory.name!r} is defined in the config file"
            )
        audit = AuditEvent(
            at=self._clock.now(),
            actor=str(actor),
            source=actor.source,
            action="acme.directory-add",
            target=directory.name,
            detail={
                "ca": directory.ca,
                "profiles": ",".join(directory.profiles) if directory.profiles else "*",
                "allow_dns": ",".join(directory.dns_suffixes),
                "allow_ip": ",".join(str(n) for n in directory.ip_ranges),
                "wildcard": str(directory.wildcard).lower(),
                "eab_required": str(directory.eab_required).lower(),
            },
        )
        await self._repo.add_directory(directory, audit=audit)
        self._cache.pop(directory.name, None)

    async def remove(self, name: str, *, actor: Principal) -> None:
        """Delete a stored directory (audited); its accounts can no longer log in.

        Raises:
            EngineError: NOT_FOUND.
        """
        audit = AuditEvent(
            at=self._clock.now(),
            actor=str(actor),
            source=actor.source,
            action="acme.directory-remove",
            target=name,
        )
        if not await self._repo.remove_directory(name, audit=audit):
            raise EngineError(ProblemKind.NOT_FOUND, f"no stored ACME directory {name!r}")
        self._cache.pop(name, None)

    async def close(self) -> None:
        """Cancel validation still running in every directory's service (shutdown)."""
        for svc in [*(s for _, s in self._services.values()), *self._retired]:
            await svc.close()
        self._services.clear()
        self._retired.clear()
