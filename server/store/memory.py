"""In-memory repositories for engine tests: same contracts as the SQL ones, no database.

``MemoryRepository`` implements ``server.ca.ports.Repository``;
``MemoryAcmeRepository`` implements ``server.ca.acme.ports.AcmeRepository``;
``MemoryStatusRepository`` implements ``server.ca.status.ports.StatusRepository``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime

from server.ca import audit as trail
from server.ca import types
from server.ca.acme import types as at
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import SerialConflictError
from server.ca.status import ports as status_ports

__all__ = [
    "MemoryAcmeRepository",
    "MemoryAuditChain",
    "MemoryRepository",
    "MemoryStatusRepository",
]


class MemoryAuditChain:
    """The memory stores' audit trail, hash-chained like the SQL one.

    Hand one to several memory repositories to chain all their records together.
    """

    def __init__(self) -> None:
        self.records: list[types.AuditEvent] = []

    @property
    def head(self) -> trail.ChainHead:
        """Return the last record's seq and hash."""
        if not self.records:
            return trail.ChainHead()
        last = self.records[-1]
        return trail.ChainHead(last.seq or 0, last.hash)

    def append(self, events: Sequence[types.AuditEvent]) -> None:
        """Number, hash and store ``events`` (callers hold their store's lock)."""
        for event in trail.chain(events, self.head):
            self.records.append(replace(event, id=event.seq))


class MemoryRepository:
    """Dict-backed repository; one asyncio lock stands in for transactions."""

    def __init__(self, chain: MemoryAuditChain | None = None) -> None:
        self.chain = chain or MemoryAuditChain()
        self.cas: dict[types.CAId, types.CA] = {}
        self.certs: dict[tuple[types.CAId, int], types.CertificateRecord] = {}
        self.crls: list[types.CrlRecord] = []
        self.crl_numbers: dict[types.CAId, int] = {}
        self.audit: list[types.AuditEvent] = self.chain.records
        self._lock = asyncio.Lock()

    def _log(self, event: types.AuditEvent) -> None:
        self.chain.append([event])

    async def add_ca(
        self,
        ca: types.CA,
        *,
        audit: types.AuditEvent,
        certificate: types.CertificateInsert | None = None,
    ) -> None:
        async with self._lock:
            # Every check before the first change: all or nothing, as one SQL transaction.
            if any(c.name == ca.name for c in self.cas.values()):
                raise EngineError(ProblemKind.CONFLICT, f"a CA named {ca.name!r} already exists")
            self._check_free(certificate)
            self.cas[ca.id] = ca
            self._write(audit, certificate=certificate)

    async def update_ca(
        self,
        ca: types.CA,
        *,
        expected_version: int,
        audit: types.AuditEvent,
        certificate: types.CertificateInsert | None = None,
        revocation: types.CertificateRevocation | None = None,
    ) -> bool:
        async with self._lock:
            stored = self.cas.get(ca.id)
            if stored is None or stored.version != expected_version:
                return False
            if revocation is not None:
                rec = revocation.record
                current = self.certs.get((rec.ca_id, rec.serial))
                if current is None or current.status is not types.CertStatus.VALID:
                    return False
            self._check_free(certificate)
            self.cas[ca.id] = replace(ca, version=expected_version + 1)
            self._write(audit, certificate=certificate, revocation=revocation)
            return True

    def _check_free(self, certificate: types.CertificateInsert | None) -> None:
        """Raise ``SerialConflictError`` if ``certificate``'s (issuer, serial) is taken."""
        if certificate is not None:
            rec = certificate.record
            if (rec.ca_id, rec.serial) in self.certs:
                raise SerialConflictError(rec.serial_hex)

    def _write(
        self,
        audit: types.AuditEvent,
        *,
        certificate: types.CertificateInsert | None = None,
        revocation: types.CertificateRevocation | None = None,
    ) -> None:
        """Store a CA write's certificate changes and chain its records in the port's order."""
        events = [audit]
        if revocation is not None:
            rec = revocation.record
            self.certs[(rec.ca_id, rec.serial)] = replace(
                self.certs[(rec.ca_id, rec.serial)],
                status=types.CertStatus.REVOKED,
                revoked_at=revocation.at,
                revocation_reason=revocation.reason,
            )
            events.insert(0, revocation.audit)
        if certificate is not None:
            self.certs[(certificate.record.ca_id, certificate.record.serial)] = certificate.record
            events.append(certificate.audit)
        self.chain.append(events)

    async def replace_ca_key(
        self,
        ca_id: types.CAId,
        *,
        old: types.KeyHandle,
        new: types.KeyHandle,
        audit: types.AuditEvent,
    ) -> bool:
        async with self._lock:
            ca = self.cas.get(ca_id)
            if ca is None or ca.key != old:
                return False
            self.cas[ca_id] = replace(ca, key=new, version=ca.version + 1)
            self._log(audit)
            return True

    async def get_ca(self, ca_id: types.CAId) -> types.CA | None:
        return self.cas.get(ca_id)

    async def get_ca_by_name(self, name: str) -> types.CA | None:
        return next((c for c in self.cas.values() if c.name == name), None)

    async def list_cas(self) -> Sequence[types.CA]:
        return sorted(self.cas.values(), key=lambda c: c.created_at)

    async def add_certificate(
        self, record: types.CertificateRecord, *, audit: types.AuditEvent
    ) -> None:
        async with self._lock:
            key = (record.ca_id, record.serial)
            if key in self.certs:
                raise SerialConflictError(record.serial_hex)
            self.certs[key] = record
            self._log(audit)

    async def get_certificate(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> types.CertificateRecord | None:
        return self.certs.get((ca_id, serial))

    async def certificate_status(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> types.CertStatus | None:
        rec = self.certs.get((ca_id, serial))
        return rec.status if rec is not None else None

    async def list_certificates(self, query: types.CertQuery) -> Sequence[types.CertificateRecord]:
        out = []
        for rec in sorted(self.certs.values(), key=lambda r: r.issued_at, reverse=True):
            if not _matches(rec, query):
                continue
            out.append(rec)
            if len(out) >= query.limit:
                break
        return out

    async def page_certificates(
        self, query: types.CertQuery, *, cursor: str | None = None
    ) -> types.CertificatePage:
        # The cursor is the insertion position of the last record handed out.
        start = len(self.certs)
        if cursor is not None:
            if not cursor.isdigit() or int(cursor) > len(self.certs):
                raise EngineError(ProblemKind.MALFORMED, "unknown cursor")
            start = int(cursor)
        records = list(self.certs.values())
        out: list[types.CertificateRecord] = []
        for position in range(start - 1, -1, -1):
            if not _matches(records[position], query):
                continue
            if len(out) == query.limit:
                return types.CertificatePage(tuple(out), str(position + 1))
            out.append(records[position])
        return types.CertificatePage(tuple(out), None)

    async def revoke_certificate(
        self,
        ca_id: types.CAId,
        serial: types.Serial,
        *,
        at: datetime,
        reason: types.RevocationReason,
        audit: types.AuditEvent,
    ) -> types.CertificateRecord | None:
        async with self._lock:
            rec = self.certs.get((ca_id, serial))
            if rec is None or rec.status is not types.CertStatus.VALID:
                return None
            updated = replace(
                rec, status=types.CertStatus.REVOKED, revoked_at=at, revocation_reason=reason
            )
            self.certs[(ca_id, serial)] = updated
            self._log(audit)
            return updated

    async def add_crl(self, crl: types.CrlRecord, *, audit: types.AuditEvent) -> None:
        async with self._lock:
            self.crls.append(crl)
            self._log(audit)

    async def latest_crl(self, ca_id: types.CAId) -> types.CrlRecord | None:
        mine = [c for c in self.crls if c.ca_id == ca_id]
        return max(mine, key=lambda c: c.number) if mine else None

    async def next_crl_number(self, ca_id: types.CAId) -> int:
        async with self._lock:
            self.crl_numbers[ca_id] = self.crl_numbers.get(ca_id, 0) + 1
            return self.crl_numbers[ca_id]

    async def add_audit(self, event: types.AuditEvent) -> None:
        async with self._lock:
            self._log(event)

    async def list_audit(self, *, limit: int = 100) -> Sequence[types.AuditEvent]:
        return list(reversed(self.audit))[:limit]

    async def audit_page(self, *, after_seq: int, limit: int) -> Sequence[types.AuditEvent]:
        return [e for e in self.audit if (e.seq or 0) > after_seq][:limit]

    async def audit_head(self) -> trail.ChainHead:
        return self.chain.head

    async def page_audit(
        self, query: types.AuditQuery, *, cursor: str | None = None
    ) -> types.AuditPage:
        # The cursor is the id of the last event handed out (ids are positions + 1).
        after = None
        if cursor is not None:
            if not cursor.isdigit() or int(cursor) > len(self.audit):
                raise EngineError(ProblemKind.MALFORMED, "unknown cursor")
            after = int(cursor)
        events = self.audit if query.oldest_first else list(reversed(self.audit))
        out: list[types.AuditEvent] = []
        for event in events:
            assert event.id is not None  # noqa: S101 - _log numbers every event
            if after is not None and (
                event.id <= after if query.oldest_first else event.id >= after
            ):
                continue
            if not _audit_matches(event, query):
                continue
            if len(out) == query.limit:
                return types.AuditPage(tuple(out), str(out[-1].id))
            out.append(event)
        return types.AuditPage(tuple(out), None)


def _audit_matches(event: types.AuditEvent, q: types.AuditQuery) -> bool:
    return (
        (q.since is None or event.at >= q.since)
        and (q.until is None or event.at < q.until)
        and (q.actor is None or event.actor == q.actor)
        and (q.action is None or event.action == q.action)
        and (q.target is None or event.target == q.target)
    )


class MemoryAcmeRepository:
    """Dict-backed ACME repository; one asyncio lock stands in for transactions."""

    def __init__(self, chain: MemoryAuditChain | None = None) -> None:
        self.chain = chain or MemoryAuditChain()
        self.accounts: dict[at.AccountId, at.Account] = {}
        self.orders: dict[at.OrderId, at.Order] = {}
        self.authzs: dict[at.AuthzId, at.Authorization] = {}
        # Claims: authorization -> when validation was claimed (None: not recorded);
        # order -> (when finalization was claimed, its CSR key's SHA-256).
        self.validating: dict[at.AuthzId, datetime | None] = {}
        self.processing: dict[at.OrderId, tuple[datetime, str]] = {}
        self.used_nonces: dict[str, datetime] = {}
        self.rate_limits: dict[str, tuple[datetime, int]] = {}
        self.eab_keys: dict[str, at.EabKey] = {}
        # certificate id -> the order holding its one replacement slot (RFC 9773 §5)
        self.replacements: dict[str, at.OrderId] = {}
        self.directories: dict[str, at.AcmeDirectory] = {}
        self.audit: list[types.AuditEvent] = self.chain.records
        self._nonce_secret: bytes | None = None
        self._lock = asyncio.Lock()

    # accounts
    async def add_account(
        self, account: at.Account, *, audit: types.AuditEvent | None = None
    ) -> at.Account:
        async with self._lock:
            existing = await self.get_account_by_thumbprint(account.key.thumbprint)
            if existing is not None:
                return existing
            self.accounts[account.id] = account
            if audit is not None:
                self.chain.append([audit])
            return account

    async def get_account(self, account_id: at.AccountId) -> at.Account | None:
        return self.accounts.get(account_id)

    async def get_account_by_thumbprint(self, thumbprint: str) -> at.Account | None:
        return next((a for a in self.accounts.values() if a.key.thumbprint == thumbprint), None)

    async def update_account(
        self, account: at.Account, *, audit: types.AuditEvent | None = None
    ) -> bool:
        async with self._lock:
            holder = await self.get_account_by_thumbprint(account.key.thumbprint)
            if holder is not None and holder.id != account.id:
                return False
            stored = self.accounts.get(account.id)
            if stored is not None:
                self.accounts[account.id] = replace(account, created_at=stored.created_at)
            if audit is not None:
                self.chain.append([audit])
            return True

    async def add_eab_account(
        self, account: at.Account, *, single_use: bool, audit: types.AuditEvent
    ) -> at.Account:
        async with self._lock:
            existing = await self.get_account_by_thumbprint(account.key.thumbprint)
            if existing is not None:
                return existing
            key = self.eab_keys.get(account.eab_kid or "")
            if key is None or key.revoked:
                raise EngineError(
                    ProblemKind.UNAUTHORIZED, "unknown or revoked external account key id"
                )
            if single_use and any(a.eab_kid == key.kid for a in self.accounts.values()):
                raise EngineError(
                    ProblemKind.UNAUTHORIZED, "this external account key has already been used"
                )
            self.accounts[account.id] = account
            self.chain.append([audit])
            return account

    # orders and authorizations
    async def add_order(
        self,
        order: at.Order,
        new_authzs: Sequence[at.Authorization],
        *,
        superseding: Sequence[at.OrderId] = (),
        audit: types.AuditEvent | None = None,
    ) -> None:
        async with self._lock:
            if order.replaces is not None:
                holder = self.replacements.get(order.replaces)
                if holder is not None and holder not in superseding:
                    raise EngineError(
                        ProblemKind.ALREADY_REPLACED,
                        f"order {holder} already replaces this certificate",
                    )
                self.replacements[order.replaces] = order.id
            for authz in new_authzs:
                self.authzs[authz.id] = authz
            self.orders[order.id] = replace(order, authorizations=())
            if audit is not None:
                self.chain.append([audit])

    async def get_order(self, order_id: at.OrderId) -> at.Order | None:
        order = self.orders.get(order_id)
        if order is None:
            return None
        authzs = tuple(self.authzs[i] for i in order.authz_ids if i in self.authzs)
        return replace(order, authorizations=authzs)

    async def orders_replacing(self, cert_id: str) -> Sequence[at.Order]:
        found = [o for o in self.orders.values() if o.replaces == cert_id]
        return [o for o in [await self.get_order(o.id) for o in found] if o is not None]

    async def list_order_ids(self, account_id: at.AccountId, *, limit: int) -> Sequence[at.OrderId]:
        mine = [o for o in self.orders.values() if o.account_id == account_id]
        mine.sort(key=lambda o: o.created_at, reverse=True)
        return [o.id for o in mine[:limit]]

    async def claim_order(
        self, order_id: at.OrderId, *, frm: at.OrderStatus, since: datetime, csr_key_sha256: str
    ) -> bool:
        async with self._lock:
            order = self.orders.get(order_id)
            if order is None or order.status is not frm:
                return False
            self.orders[order_id] = replace(order, status=at.OrderStatus.PROCESSING)
            self.processing[order_id] = (since, csr_key_sha256)
            return True

    async def finish_order(
        self,
        order_id: at.OrderId,
        *,
        status: at.OrderStatus,
        cert_ref: str | None,
        error: at.StoredProblem | None,
        audit: types.AuditEvent | None = None,
        claimed_before: datetime | None = None,
    ) -> bool:
        async with self._lock:
            order = self.orders.get(order_id)
            claim = self.processing.get(order_id)
            if order is None or order.status is not at.OrderStatus.PROCESSING:
                return False
            if claimed_before is not None and (claim is None or claim[0] >= claimed_before):
                return False
            self.orders[order_id] = replace(order, status=status, cert_ref=cert_ref, error=error)
            self.processing.pop(order_id, None)
            if audit is not None:
                self.chain.append([audit])
            return True

    async def stuck_orders(
        self, *, claimed_before: datetime, limit: int
    ) -> Sequence[at.ClaimedOrder]:
        stuck = sorted(
            (since, order_id, key)
            for order_id, (since, key) in self.processing.items()
            if since < claimed_before and self.orders[order_id].status is at.OrderStatus.PROCESSING
        )
        found = []
        for since, order_id, key in stuck[:limit]:
            order = await self.get_order(order_id)
            if order is not None:
                found.append(at.ClaimedOrder(order, since, key))
        return found

    async def find_valid_authz(
        self, account_id: at.AccountId, identifier: at.Identifier, *, now: datetime, wildcard: bool
    ) -> at.Authorization | None:
        found = [
            a
            for a in self.authzs.values()
            if a.account_id == account_id
            and a.identifier == identifier
            and a.status is at.AuthzStatus.VALID
            and a.wildcard == wildcard
            and a.expires > now
        ]
        return max(found, key=lambda a: a.expires, default=None)

    async def count_pending_authzs(self, account_id: at.AccountId, *, now: datetime) -> int:
        return sum(
            1
            for a in self.authzs.values()
            if a.account_id == account_id and a.status is at.AuthzStatus.PENDING and a.expires > now
        )

    async def add_authz(
        self, authz: at.Authorization, *, audit: types.AuditEvent | None = None
    ) -> None:
        async with self._lock:
            self.authzs[authz.id] = authz
            if audit is not None:
                self.chain.append([audit])

    async def get_authz(self, authz_id: at.AuthzId) -> at.Authorization | None:
        return self.authzs.get(authz_id)

    async def claim_challenge(
        self, authz_id: at.AuthzId, updated: at.Authorization, *, since: datetime
    ) -> bool:
        async with self._lock:
            authz = self.authzs.get(authz_id)
            if (
                authz is None
                or authz.status is not at.AuthzStatus.PENDING
                or authz_id in self.validating
            ):
                return False
            self.authzs[authz_id] = updated
            self.validating[authz_id] = since
            return True

    async def save_authz(
        self,
        authz: at.Authorization,
        *,
        validating_done: bool,
        audit: types.AuditEvent | None = None,
        claimed: bool = False,
    ) -> bool:
        async with self._lock:
            if authz.id not in self.authzs:
                return False
            if claimed and authz.id not in self.validating:
                return False
            self.authzs[authz.id] = authz
            if audit is not None:
                self.chain.append([audit])
            if validating_done:
                self.validating.pop(authz.id, None)
            else:
                self.validating.setdefault(authz.id, None)
            return True

    async def stuck_authzs(
        self, *, claimed_before: datetime, limit: int
    ) -> Sequence[at.Authorization]:
        stuck = sorted(
            (s, i) for i, s in self.validating.items() if s is not None and s < claimed_before
        )
        return [self.authzs[i] for _, i in stuck[:limit]]

    # replay nonces
    async def consume_nonces(self, nonces: Sequence[tuple[str, datetime]]) -> set[str]:
        async with self._lock:
            fresh = {n for n, _ in nonces if n not in self.used_nonces}
            self.used_nonces.update({n: e for n, e in nonces if n in fresh})
            return fresh

    async def purge_nonces(self, *, before: datetime) -> int:
        async with self._lock:
            old = [n for n, expires in self.used_nonces.items() if expires < before]
            for n in old:
                del self.used_nonces[n]
            return len(old)

    async def nonce_secret(self, candidate: bytes) -> bytes:
        if self._nonce_secret is None:
            self._nonce_secret = candidate
        return self._nonce_secret

    # rate limits
    async def hit_rate_limit(self, key: str, *, window_start: datetime, limit: int) -> bool:
        async with self._lock:
            start, count = self.rate_limits.get(key, (window_start, 0))
            if start != window_start:
                start, count = window_start, 0
            elif count >= limit:
                return False
            self.rate_limits[key] = (start, count + 1)
            return True

    # external account binding
    async def add_eab_key(self, key: at.EabKey, *, audit: types.AuditEvent) -> None:
        async with self._lock:
            self.eab_keys[key.kid] = replace(key, revoked=False, account_ids=())
            self.chain.append([audit])

    async def get_eab_key(self, kid: str) -> at.EabKey | None:
        return self.eab_keys.get(kid)

    async def list_eab_keys(self) -> Sequence[at.EabKey]:
        return [
            replace(
                k,
                account_ids=tuple(
                    sorted(a.id for a in self.accounts.values() if a.eab_kid == k.kid)
                ),
            )
            for k in sorted(self.eab_keys.values(), key=lambda k: k.created_at)
        ]

    async def revoke_eab_key(
        self, kid: str, *, deactivate_accounts: bool, audit: types.AuditEvent
    ) -> Sequence[at.AccountId] | None:
        async with self._lock:
            key = self.eab_keys.get(kid)
            if key is None:
                return None
            self.eab_keys[kid] = replace(key, revoked=True)
            done: list[at.AccountId] = []
            if deactivate_accounts:
                for a in sorted(self.accounts.values(), key=lambda a: a.id):
                    if a.eab_kid == kid and a.status is at.AccountStatus.VALID:
                        self.accounts[a.id] = replace(a, status=at.AccountStatus.DEACTIVATED)
                        done.append(a.id)
                audit = replace(audit, detail={**audit.detail, "deactivated": ",".join(done)})
            self.chain.append([audit])
            return done

    # named directories
    async def add_directory(self, directory: at.AcmeDirectory, *, audit: types.AuditEvent) -> None:
        async with self._lock:
            if directory.name in self.directories:
                raise EngineError(
                    ProblemKind.CONFLICT,
                    f"an ACME directory named {directory.name!r} already exists",
                )
            self.directories[directory.name] = directory
            self.chain.append([audit])

    async def get_directory(self, name: str) -> at.AcmeDirectory | None:
        return self.directories.get(name)

    async def list_directories(self) -> Sequence[at.AcmeDirectory]:
        return [self.directories[k] for k in sorted(self.directories)]

    async def remove_directory(self, name: str, *, audit: types.AuditEvent) -> bool:
        async with self._lock:
            if self.directories.pop(name, None) is None:
                return False
            self.chain.append([audit])
            return True


class MemoryStatusRepository:
    """Dict-backed ``StatusRepository`` for engine tests (revocations come from ``source``).

    Records go to ``source``'s audit chain when it has one (a ``MemoryRepository``).
    """

    def __init__(self, source: object | None = None) -> None:
        chain = getattr(source, "chain", None)
        self.chain = chain if isinstance(chain, MemoryAuditChain) else MemoryAuditChain()
        self.responses: dict[tuple[types.CAId, int], status_ports.StoredResponse] = {}
        self.signers: list[status_ports.SignerRecord] = []
        self.dirty: dict[types.CAId, datetime] = {}
        self._source = source
        self._locks: dict[str, asyncio.Lock] = {}

    async def put_response(self, response: status_ports.StoredResponse) -> None:
        self.responses[(response.ca_id, response.serial)] = response

    async def get_response(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> status_ports.StoredResponse | None:
        return self.responses.get((ca_id, serial))

    async def changed_since(
        self, since: datetime, *, limit: int
    ) -> Sequence[tuple[types.CAId, types.Serial, datetime]]:
        out = [
            (r.ca_id, r.serial, r.updated_at)
            for r in self.responses.values()
            if r.updated_at > since
        ]
        return sorted(out, key=lambda t: t[2])[:limit]

    async def stale_responses(
        self, produced_before: datetime, *, valid_after: datetime, limit: int
    ) -> Sequence[tuple[types.CAId, types.Serial]]:
        del valid_after  # the memory store keeps no certificate validity
        return [
            (r.ca_id, r.serial) for r in self.responses.values() if r.this_update < produced_before
        ][:limit]

    async def count_responses(self) -> int:
        return len(self.responses)

    async def add_signer(self, signer: status_ports.SignerRecord) -> None:
        self.signers.append(signer)

    async def current_signer(self, ca_id: types.CAId) -> status_ports.SignerRecord | None:
        mine = [s for s in self.signers if s.ca_id == ca_id]
        return max(mine, key=lambda s: s.created_at) if mine else None

    async def list_signers(self, ca_id: types.CAId) -> Sequence[status_ports.SignerRecord]:
        return sorted((s for s in self.signers if s.ca_id == ca_id), key=lambda s: s.created_at)

    async def remove_signer(
        self, ca_id: types.CAId, serial: types.Serial, *, audit: types.AuditEvent
    ) -> bool:
        kept = [s for s in self.signers if (s.ca_id, s.serial) != (ca_id, serial)]
        removed = len(kept) != len(self.signers)
        self.signers = kept
        if removed:
            self.chain.append([audit])
        return removed

    async def mark_crl_dirty(self, ca_id: types.CAId, at: datetime) -> None:
        self.dirty[ca_id] = max(at, self.dirty.get(ca_id, at))

    async def dirty_crls(self) -> Sequence[tuple[types.CAId, datetime]]:
        return list(self.dirty.items())

    async def clear_crl_dirty(self, ca_id: types.CAId, *, up_to: datetime) -> None:
        marked = self.dirty.get(ca_id)
        if marked is not None and marked <= up_to:
            del self.dirty[ca_id]

    async def list_revocations(
        self, ca_id: types.CAId, *, since: datetime | None = None
    ) -> Sequence[status_ports.RevokedEntry]:
        certs: dict[tuple[types.CAId, int], types.CertificateRecord] = getattr(
            self._source, "certs", {}
        )
        return [
            status_ports.RevokedEntry(
                serial=r.serial,
                revoked_at=int(r.revoked_at.timestamp()) if r.revoked_at else None,
                reason=r.revocation_reason,
            )
            for r in certs.values()
            if r.ca_id == ca_id
            and r.status is types.CertStatus.REVOKED
            and (since is None or r.revoked_at is None or r.revoked_at >= since)
        ]

    async def latest_crl_info(self, ca_id: types.CAId) -> tuple[int, datetime] | None:
        crls: list[types.CrlRecord] = getattr(self._source, "crls", [])
        mine = [c for c in crls if c.ca_id == ca_id]
        if not mine:
            return None
        newest = max(mine, key=lambda c: c.number)
        return newest.number, newest.this_update

    @contextlib.asynccontextmanager
    async def leader(self, name: str) -> AsyncIterator[bool]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            yield True


def _matches(rec: types.CertificateRecord, query: types.CertQuery) -> bool:
    """Return whether ``rec`` passes every filter of ``query``."""
    if query.ca_id is not None and rec.ca_id != query.ca_id:
        return False
    if query.ca_ids is not None and rec.ca_id not in query.ca_ids:
        return False
    if query.status is not None and rec.status is not query.status:
        return False
    if query.serial is not None and rec.serial != query.serial:
        return False
    if query.expires_before is not None and rec.not_after >= query.expires_before:
        return False
    if query.expires_after is not None and rec.not_after <= query.expires_after:
        return False
    if query.text is not None:
        needle = query.text.lower()
        hay = [rec.subject.lower(), *(s.lower() for s in rec.sans)]
        if not any(needle in h for h in hay):
            return False
    return True
