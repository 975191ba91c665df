"""EST enrollment accounts (RFC 7030 §3.2.3): HTTP Basic users of a label and their passwords.

Owns salted PBKDF2 hashing, constant-time verification (unknown users pay the
same PBKDF2 cost), and a short cache of successful checks keyed by an HMAC
under a per-process secret. Every login draws on the failed-login budgets of
``logins.py`` before PBKDF2 runs, cached or not. Must not import aiohttp, josepy
or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Final

from server.ca import grants
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import identity
from server.ca.est.identity import ClientIdentity
from server.ca.est.labels import Labels, narrow_for_account
from server.ca.est.logins import LoginLimits, Logins
from server.ca.est.ports import AuthMode, EstLabel, EstRepository, EstUser
from server.ca.ports import Clock
from server.ca.types import AuditEvent, Principal

__all__ = ["Users", "hash_password", "verify_password_hash"]

_USER_RE: Final = re.compile(r"^[^\x00-\x1f:]{1,128}$")
_PBKDF2_ITERATIONS: Final = 210_000
_MIN_PASSWORD: Final = 8
_AUTH_CACHE_TTL: Final = 60.0
_AUTH_CACHE_MAX: Final = 10_000


def hash_password(password: str, *, iterations: int = _PBKDF2_ITERATIONS) -> str:
    """Return a salted PBKDF2-HMAC-SHA256 hash as ``pbkdf2_sha256$iter$salt$hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join(
        (
            "pbkdf2_sha256",
            str(iterations),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def verify_password_hash(password: str, stored: str) -> bool:
    """Check a password against ``hash_password`` output in constant time."""
    try:
        scheme, iterations, salt_b64, digest_b64 = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        rounds = int(iterations)
    except ValueError:
        return False
    actual = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return hmac.compare_digest(actual, expected)


# Verified in place of a missing user's hash, so "no such user" costs what a wrong password does.
_DUMMY_HASH: Final = hash_password("dummy-password-for-timing", iterations=_PBKDF2_ITERATIONS)


def _client(principal: Principal, user: EstUser) -> ClientIdentity:
    return ClientIdentity(
        principal=principal,
        dns_suffixes=user.dns_suffixes,
        subject_patterns=user.subject_patterns,
        max_days=user.max_days,
    )


class Users:
    """Enrollment accounts of the labels, and HTTP Basic login against them."""

    def __init__(
        self,
        labels: Labels,
        repo: EstRepository,
        *,
        clock: Clock,
        limits: LoginLimits | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._labels = labels
        self._repo = repo
        self._clock = clock
        self._monotonic = monotonic
        self._logins = Logins(repo, limits or LoginLimits(), clock=clock, monotonic=monotonic)
        # Keyed by HMAC(process secret, label/user/password): never the password itself.
        self._auth_key = secrets.token_bytes(32)
        self._auth_ok: dict[bytes, tuple[float, EstUser]] = {}

    async def add(
        self,
        label: str,
        username: str,
        password: str,
        *,
        actor: Principal,
        dns_suffixes: tuple[str, ...] | None = None,
        subject_patterns: tuple[str, ...] | None = None,
        max_days: int | None = None,
    ) -> EstUser:
        """Create (or reset) an enrollment account, optionally narrower than its label.

        Raises:
            EngineError: NOT_FOUND (label), MALFORMED (username, short password, or a
                narrowing outside the label's grant).
        """
        found = await self._labels.get(label)
        if not _USER_RE.match(username):
            raise EngineError(ProblemKind.MALFORMED, "usernames are 1-128 chars without ':'")
        if len(password) < _MIN_PASSWORD:
            raise EngineError(
                ProblemKind.MALFORMED, f"passwords need at least {_MIN_PASSWORD} characters"
            )
        if max_days is not None and max_days < 1:
            raise EngineError(ProblemKind.MALFORMED, "max days must be >= 1")
        try:
            # The label's names, narrowed: refuses a suffix or pattern the label lacks.
            narrow_for_account(
                grants.Grant(
                    dns_suffixes=found.dns_suffixes, subject_patterns=found.subject_patterns
                ),
                dns_suffixes=dns_suffixes,
                subject_patterns=subject_patterns,
                max_days=max_days,
            )
        except EngineError as exc:
            raise EngineError(ProblemKind.MALFORMED, exc.detail) from exc
        now = self._clock.now()
        user = EstUser(
            label=label,
            username=username,
            password_hash=await asyncio.to_thread(hash_password, password),
            created_at=now,
            dns_suffixes=dns_suffixes,
            subject_patterns=subject_patterns,
            max_days=max_days,
        )
        detail = {}
        if user.is_narrowed:
            detail["narrowing"] = (
                f"dns={','.join(dns_suffixes or ())} subject={','.join(subject_patterns or ())} "
                f"max-days={max_days or '-'}"
            )
        audit = AuditEvent(
            at=now,
            actor=str(actor),
            source=actor.source,
            action="est.user-add",
            target=f"{label}/{username}",
            detail=detail,
        )
        await self._repo.put_user(user, audit=audit)
        self._auth_ok.clear()  # a changed narrowing applies at the next login
        return user

    async def remove(self, label: str, username: str, *, actor: Principal) -> None:
        """Delete an enrollment account.

        Raises:
            EngineError: NOT_FOUND.
        """
        audit = AuditEvent(
            at=self._clock.now(),
            actor=str(actor),
            source=actor.source,
            action="est.user-remove",
            target=f"{label}/{username}",
        )
        if not await self._repo.remove_user(label, username, audit=audit):
            raise EngineError(ProblemKind.NOT_FOUND, f"no EST user {username!r} on {label!r}")

    async def list_all(self, label: str | None = None) -> Sequence[EstUser]:
        """Return enrollment accounts (hashes included; never printed by the CLI)."""
        return await self._repo.list_users(label)

    async def authenticate(
        self, label: EstLabel, username: str, password: str, *, client: str
    ) -> ClientIdentity | None:
        """Check HTTP Basic credentials for a label; None when they are wrong.

        ``client`` is the client's address: with the account it names the two
        failed-login budgets (``logins.py``) the attempt draws on. A token of each is
        taken before PBKDF2 runs and given back on success, so parallel wrong
        passwords cannot outrun the limit. A successful check is remembered for a
        minute (keyed by an HMAC under a per-process secret) so PBKDF2 does not
        dominate enrollment throughput; a remembered login still waits out a lockout.

        Raises:
            EngineError: UNAUTHORIZED when the label does not allow Basic auth;
                RATE_LIMITED (retry_after) when the address or account is out of
                failed logins; UNAVAILABLE (retry_after) when every PBKDF2 slot stays busy.
        """
        if AuthMode.BASIC not in label.auth_modes:
            raise EngineError(
                ProblemKind.UNAUTHORIZED, f"label {label.name} does not accept passwords"
            )
        principal = identity.principal(identity.USER_KIND, label.name, username)
        budgets = self._logins.budgets(client=client, label=label.name, username=username)
        attempt = f"{label.name}/{username[:64]!r} from {client[:64]}"
        token = hmac.new(
            self._auth_key,
            b"\x00".join((label.name.encode(), username.encode(), password.encode())),
            hashlib.sha256,
        ).digest()
        now = self._monotonic()
        cached = self._auth_ok.get(token)
        if cached is not None and cached[0] > now:
            await self._logins.check_open(budgets, attempt=attempt)
            return _client(principal, cached[1])
        await self._logins.reserve(budgets, attempt=attempt)
        try:
            user = await self._repo.get_user(label.name, username)
            stored = user.password_hash if user is not None else _DUMMY_HASH
            ok = await self._logins.verify(
                functools.partial(verify_password_hash, password, stored)
            )
        except Exception:
            # No verdict (storage down, no PBKDF2 slot): the attempt costs no token.
            await self._logins.release(budgets)
            raise
        if not ok or user is None:
            return None  # the tokens stay taken: this is a failed login
        await self._logins.release(budgets)
        if len(self._auth_ok) >= _AUTH_CACHE_MAX:
            self._auth_ok = {k: v for k, v in self._auth_ok.items() if v[0] > now}
            if len(self._auth_ok) >= _AUTH_CACHE_MAX:
                self._auth_ok.clear()
        self._auth_ok[token] = (now + _AUTH_CACHE_TTL, user)
        return _client(principal, user)
