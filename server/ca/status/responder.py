"""OCSP responder (RFC 6960, RFC 5019 profile): pre-signed answers, nonces, delegated signers.

A response for (issuer, serial) is signed when the certificate is issued or
revoked (the engine calls ``issued``/``revoked``) and re-signed in the
background before nextUpdate, so answering is a cache or key-value read.
Requests carrying a nonce get a fresh response echoing it when nonce echo is
on; several CertIDs in one request are answered together in one fresh
response. Signing uses the issuing CA's key or, when configured, a delegated
signer certificate (id-kp-OCSPSigning + id-pkix-ocsp-nocheck) that this
module issues and rotates. An offline CA's answers are signed at its ceremony
(``offline.py``); here they are served as stored, and signed only with a
delegated signer that ceremony left. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from server.ca import lifecycle
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import Clock, Repository, SystemClock
from server.ca.status import answer_cache, ocsp_codec
from server.ca.status import ports as status_ports
from server.ca.types import (
    CA,
    CAId,
    CertificateRecord,
    CertStatus,
    RevocationReason,
    Serial,
)

if TYPE_CHECKING:
    from server.ca.api import CAEngine

__all__ = ["OcspAnswer", "Responder", "ResponderSettings", "is_issued_by"]

log = logging.getLogger(__name__)

_CA_RELOAD_INTERVAL: Final = 1.0
_EXPIRY_MARGIN: Final = 60.0
_POLL_OVERLAP: Final = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class ResponderSettings:
    """OCSP behaviour; validated by ``server.config`` before it gets here."""

    validity: timedelta = timedelta(days=4)
    refresh_after: timedelta = timedelta(days=2)
    nonce_echo: bool = False
    delegated_signer: bool = False
    signer_lifetime: timedelta = timedelta(days=30)
    cache_entries: int = 200_000
    cache_bytes: int = 64 * 1024 * 1024
    # Answers signed on the request path per second (0: unlimited); see ``_take_live``.
    live_signatures_per_second: float = 50.0
    max_items: int = 32


@dataclass(frozen=True, slots=True)
class OcspAnswer:
    """A signed OCSP response plus the RFC 5019 §6 caching facts a front end renders."""

    der: bytes
    cacheable: bool
    next_update_ts: float = 0.0
    last_modified: str = ""
    expires: str = ""
    etag: str = ""

    @classmethod
    def signed(
        cls, der: bytes, *, this_update: datetime, next_update: datetime, cacheable: bool
    ) -> OcspAnswer:
        """Describe a successful response."""
        return cls(
            der=der,
            cacheable=cacheable,
            next_update_ts=next_update.timestamp(),
            last_modified=format_datetime(this_update, usegmt=True),
            expires=format_datetime(next_update, usegmt=True),
            etag='"' + hashlib.sha1(der, usedforsecurity=False).hexdigest() + '"',
        )


@dataclass(frozen=True, slots=True)
class _CaInfo:
    ca: CA
    name_der: bytes
    key_bits: bytes
    key_sha1: bytes


@dataclass(frozen=True, slots=True)
class _Signer:
    key: ocsp_codec.SignerKey
    not_after: datetime
    # The CA certificate it signs for: a renewal (perhaps with a new key) replaces the signer.
    ca_der: bytes | None = None
    # Made for an offline CA: marking a CA offline or online replaces the signer.
    offline: bool = False


def is_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Return whether ``issuer``'s key signed ``cert`` (a delegated signer after a rekey)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _reason_code(reason: RevocationReason | None) -> int | None:
    # RFC 5280 §5.3.1: omit the reason rather than say "unspecified".
    if reason is None or reason is RevocationReason.UNSPECIFIED:
        return None
    return reason.code


class Responder:
    """Answers OCSP requests for every CA privca holds."""

    def __init__(
        self,
        engine: CAEngine,
        repo: Repository,
        store: status_ports.StatusRepository,
        *,
        settings: ResponderSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._store = store
        self.settings = settings or ResponderSettings()
        self._clock = clock or SystemClock()
        self._by_hash: dict[tuple[bytes, bytes, bytes], CAId] = {}
        self._cas: dict[CAId, _CaInfo] = {}
        self._loaded_at = -1e9
        self._signers: dict[CAId, _Signer] = {}
        self.cache: answer_cache.AnswerCache[OcspAnswer] = answer_cache.AnswerCache(
            max_bytes=self.settings.cache_bytes, max_entries=self.settings.cache_entries
        )
        rate = self.settings.live_signatures_per_second
        self._live_tokens = 2 * rate
        self._live_at = 0.0
        self.live_signatures = 0
        # Answers served from the cache / looked up or signed (metrics read these).
        self.cache_hits = 0
        self.cache_misses = 0
        self._seen: datetime | None = None
        self._handled: dict[tuple[CAId, int], datetime] = {}
        self._inflight: dict[bytes, asyncio.Future[OcspAnswer]] = {}

    # ------------------------------------------------------------------ issuers

    async def _load_cas(self) -> None:
        by_hash: dict[tuple[bytes, bytes, bytes], CAId] = {}
        infos: dict[CAId, _CaInfo] = {}
        now = self._clock.now()
        for ca in await self._engine.list_cas():
            # Disabled and revoked CAs still answer for the certificates they issued.
            if not lifecycle.publishes_status(ca, now) or ca.cert_der is None:
                continue
            cert = ca.certificate
            name_der = cert.subject.public_bytes()
            key_bits = ocsp_codec.public_key_bits(
                cert.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            infos[ca.id] = _CaInfo(
                ca=ca,
                name_der=name_der,
                key_bits=key_bits,
                key_sha1=hashlib.sha1(key_bits, usedforsecurity=False).digest(),
            )
            for oid, name in ocsp_codec.HASH_OIDS.items():
                key = (
                    oid,
                    hashlib.new(name, name_der, usedforsecurity=False).digest(),
                    hashlib.new(name, key_bits, usedforsecurity=False).digest(),
                )
                by_hash[key] = ca.id
        self._by_hash, self._cas = by_hash, infos
        self._loaded_at = time.monotonic()

    async def _issuer_of(self, item: ocsp_codec.CertId) -> _CaInfo | None:
        key = (item.hash_oid, item.name_hash, item.key_hash)
        ca_id = self._by_hash.get(key)
        if ca_id is None and time.monotonic() - self._loaded_at > _CA_RELOAD_INTERVAL:
            await self._load_cas()  # a CA created since (by the CLI or another node)
            ca_id = self._by_hash.get(key)
        return self._cas.get(ca_id) if ca_id is not None else None

    async def _ca_info(self, ca_id: CAId) -> _CaInfo | None:
        info = self._cas.get(ca_id)
        current = await self._engine.find_ca(ca_id)  # the engine's copy, re-read every STATE_TTL
        if info is None or (
            current is not None
            and (current.cert_der != info.ca.cert_der or current.offline is not info.ca.offline)
        ):
            # New, or renewed (perhaps with a new key): sign with its current certificate.
            await self._load_cas()
            info = self._cas.get(ca_id)
        return info

    # ------------------------------------------------------------------ signers

    def _now(self) -> datetime:
        return self._clock.now().replace(microsecond=0)

    async def _signer(self, info: _CaInfo) -> _Signer:
        signer = await self._signer_or_none(info)
        if signer is None:
            # Divergence: RFC 6960 §2.3 "unauthorized" rather than "tryLater": no retry
            # helps before the next ceremony, and a stale answer would be refused anyway.
            raise EngineError(
                ProblemKind.UNAUTHORIZED,
                f"CA {info.ca.name} is offline: only answers signed at its ceremony are served",
            )
        return signer

    async def _signer_or_none(self, info: _CaInfo) -> _Signer | None:
        """Return the signer of a CA's answers; None for an offline CA without a delegated one."""
        now = self._now()
        # An offline CA's delegated signer cannot be rotated here: use it to the end.
        margin = timedelta(0) if info.ca.offline else self._rotate_margin()
        cached = self._signers.get(info.ca.id)
        if (
            cached is not None
            and cached.ca_der == info.ca.cert_der
            and cached.offline is info.ca.offline
            and cached.not_after - now > margin
        ):
            return cached
        if info.ca.offline and not self._engine.in_ceremony:
            found = await self._offline_delegated(info, now)
            if found is None:
                return None
            signer = found
        elif info.ca.offline or not self.settings.delegated_signer:
            # The ceremony signs with the offline CA's own key (``status/offline.py``).
            issuer = await self._engine.status_issuer(info.ca)
            signer = _Signer(
                key=ocsp_codec.SignerKey(signer=issuer.signer, key_hash=info.key_sha1),
                not_after=issuer.not_after,
            )
        else:
            signer = await self._delegated(info, now)
        signer = dataclasses.replace(signer, ca_der=info.ca.cert_der, offline=info.ca.offline)
        self._signers[info.ca.id] = signer
        return signer

    def _rotate_margin(self) -> timedelta:
        if not self.settings.delegated_signer:
            return timedelta(0)
        # Rotate at half-life, and always early enough to cover a full response validity.
        return max(self.settings.signer_lifetime / 2, self.settings.validity * 1.5)

    async def _delegated(self, info: _CaInfo, now: datetime) -> _Signer:
        record = await self._store.current_signer(info.ca.id)
        cert = x509.load_der_x509_certificate(record.cert_der) if record is not None else None
        if (
            record is None
            or cert is None
            or record.not_after - now <= self._rotate_margin()
            # After ``ca renew --rekey`` a signer certified by the old key proves nothing.
            or not is_issued_by(cert, info.ca.certificate)
        ):
            record = await self.issue_signer(info.ca)
            cert = x509.load_der_x509_certificate(record.cert_der)
        return await self._load_delegated(record, cert)

    async def _offline_delegated(self, info: _CaInfo, now: datetime) -> _Signer | None:
        """Return the delegated signer an offline CA's ceremony left, if still valid."""
        record = await self._store.current_signer(info.ca.id)
        if record is None or record.not_after <= now:
            return None
        cert = x509.load_der_x509_certificate(record.cert_der)
        if not is_issued_by(cert, info.ca.certificate):
            return None
        return await self._load_delegated(record, cert)

    async def _load_delegated(
        self, record: status_ports.SignerRecord, cert: x509.Certificate
    ) -> _Signer:
        key = await self._engine.key_signer(record.key)
        bits = ocsp_codec.public_key_bits(
            cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return _Signer(
            key=ocsp_codec.SignerKey(
                signer=key,
                key_hash=hashlib.sha1(bits, usedforsecurity=False).digest(),
                certs=(record.cert_der,),
            ),
            not_after=record.not_after,
        )

    async def issue_signer(
        self, ca: CA, *, lifetime: timedelta | None = None
    ) -> status_ports.SignerRecord:
        """Have the engine issue a delegated OCSP signer for ``ca`` and keep it (RFC 6960 §4.2.2.2).

        Raises:
            EngineError: POLICY (CA without a valid certificate; ``ca.offline``
                outside a ceremony).
        """
        record, handle = await self._engine.issue_ocsp_signer(
            ca, lifetime=lifetime or self.settings.signer_lifetime
        )
        signer = status_ports.SignerRecord(
            ca_id=ca.id,
            serial=record.serial,
            cert_der=record.der,
            key=handle,
            not_before=record.not_before,
            not_after=record.not_after,
            created_at=record.issued_at,
        )
        await self._store.add_signer(signer)
        log.info("issued delegated OCSP signer %s for CA %s", record.serial_hex, ca.name)
        return signer

    # ------------------------------------------------------------------ signing

    @staticmethod
    def _single(rec: CertificateRecord | None, cert_id: bytes) -> ocsp_codec.SingleStatus:
        if rec is None:
            return ocsp_codec.SingleStatus(cert_id=cert_id, status="unknown")
        if rec.status is CertStatus.REVOKED:
            return ocsp_codec.SingleStatus(
                cert_id=cert_id,
                status="revoked",
                revoked_at=rec.revoked_at,
                reason_code=_reason_code(rec.revocation_reason),
            )
        return ocsp_codec.SingleStatus(cert_id=cert_id, status="good")

    def _window(
        self, signer: _Signer, validity: timedelta | None = None
    ) -> tuple[datetime, datetime]:
        now = self._now()
        return now, min(now + (validity or self.settings.validity), signer.not_after)

    async def _sign(
        self,
        info: _CaInfo,
        items: Sequence[ocsp_codec.SingleStatus],
        *,
        nonce: bytes | None,
        validity: timedelta | None = None,
        signer: _Signer | None = None,
    ) -> tuple[bytes, datetime, datetime]:
        signer = signer or await self._signer(info)
        this_update, next_update = self._window(signer, validity)
        der = ocsp_codec.encode_response(
            signer.key, items, this_update=this_update, next_update=next_update, nonce=nonce
        )
        return der, this_update, next_update

    def _canonical_id(self, info: _CaInfo, serial: int) -> bytes:
        return ocsp_codec.cert_id(
            "sha1", name_der=info.name_der, key_bits=info.key_bits, serial=serial
        )

    async def presign(
        self, rec: CertificateRecord, *, validity: timedelta | None = None
    ) -> status_ports.StoredResponse | None:
        """Sign and store the response of one certificate.

        ``validity`` overrides the configured one (an offline CA's ceremony). None when
        its CA is not served, or is offline with no signer here (its ceremony's answer
        stays).
        """
        info = await self._ca_info(rec.ca_id)
        if info is None:
            return None
        signer = await self._signer_or_none(info)
        if signer is None:
            log.debug("OCSP answer of %s left to CA %s's ceremony", rec.serial_hex, info.ca.name)
            return None
        single = self._single(rec, self._canonical_id(info, rec.serial))
        der, this_update, next_update = await self._sign(
            info, [single], nonce=None, validity=validity, signer=signer
        )
        stored = status_ports.StoredResponse(
            ca_id=rec.ca_id,
            serial=rec.serial,
            der=der,
            cert_status=single.status,
            this_update=this_update,
            next_update=next_update,
            updated_at=self._clock.now(),
        )
        await self._store.put_response(stored)
        self.invalidate([(rec.ca_id, rec.serial)])
        return stored

    # ------------------------------------------------------------------ engine hooks

    async def issued(self, record: CertificateRecord) -> None:
        """Pre-sign the response of a freshly issued certificate."""
        await self.presign(record)

    async def revoked(self, record: CertificateRecord) -> None:
        """Re-sign the response of a revoked certificate."""
        await self.presign(record)

    # ------------------------------------------------------------------ answering

    def cached(self, body: bytes) -> OcspAnswer | None:
        """Return the cached answer for a request body seen before (the hot path), if fresh.

        Only short bodies are remembered (``answer_cache``); anything else is parsed
        by ``answer`` and found by its CertIDs.
        """
        key = self.cache.key_of(body)
        hit = self.cache.get(key, self._clock.now().timestamp()) if key is not None else None
        if hit is not None:
            self.cache_hits += 1
        return hit

    def _remember(
        self,
        key: bytes,
        answer: OcspAnswer,
        certs: tuple[tuple[CAId, int], ...],
        *,
        body: bytes | None,
    ) -> None:
        self.cache.put(
            key,
            answer,
            der_size=len(answer.der),
            fresh_until=answer.next_update_ts - _EXPIRY_MARGIN,
            certs=certs,
            body=body,
        )

    def invalidate(self, certs: Iterable[tuple[CAId, int]]) -> int:
        """Drop cached answers of these certificates (their stored response changed).

        Returns how many of the certificates had cached answers.
        """
        return self.cache.invalidate(certs)

    def _take_live(self) -> None:
        """Take one live signature from the per-process budget.

        Divergence: an answer for a serial privca never issued (RFC 6960 §2.2
        "unknown") cannot be pre-signed, because the SingleResponse carries the
        requested CertID, serial included, under the signature, and serials are
        20 random octets. So live signatures (unknown serials, several CertIDs,
        SHA-2 CertIDs, echoed nonces) are rate-limited instead: each distinct
        answer is signed once and cached by CertID, and beyond the budget the
        answer is ``tryLater`` (RFC 6960 §4.2.1), so random serials cannot keep
        an RSA-4096 key signing. Pre-signed answers (issued certificates) never
        wait on it.

        Raises:
            EngineError: RATE_LIMITED (no signature left this second).
        """
        rate = self.settings.live_signatures_per_second
        if rate > 0:
            now = self._clock.now().timestamp()
            burst = 2 * rate
            tokens = min(burst, self._live_tokens + (now - self._live_at) * rate)
            self._live_at = now
            if tokens < 1:
                self._live_tokens = tokens
                raise EngineError(
                    ProblemKind.RATE_LIMITED, "too many OCSP answers to sign live; try later"
                )
            self._live_tokens = tokens - 1
        self.live_signatures += 1

    async def answer(self, body: bytes) -> OcspAnswer:
        """Answer one DER OCSPRequest.

        Raises:
            EngineError: MALFORMED (not a request), UNAUTHORIZED (an issuer privca
                does not hold, or CertIDs of several issuers), RATE_LIMITED (an
                answer to sign live beyond ``live_signatures_per_second``).
        """
        hit = self.cached(body)
        if hit is not None:
            return hit
        try:
            request = ocsp_codec.parse_request(body, max_items=self.settings.max_items)
        except ocsp_codec.MalformedError as exc:
            raise EngineError(ProblemKind.MALFORMED, f"malformed OCSP request: {exc}") from exc
        infos = [await self._issuer_of(item) for item in request.items]
        first = infos[0]
        if first is None or any(i is None or i.ca.id != first.ca.id for i in infos):
            raise EngineError(ProblemKind.UNAUTHORIZED, "this responder does not serve that issuer")
        nonce = request.nonce if self.settings.nonce_echo else None
        certs = tuple((first.ca.id, item.serial) for item in request.items)
        # The CertIDs determine the answer (each raw CertID is one DER SEQUENCE, so
        # their concatenation is unambiguous); the rest of the body does not.
        key = b"".join(item.raw for item in request.items)
        alias = body if request.nonce is None else None
        if nonce is None:
            hit = self.cache.get(key, self._clock.now().timestamp())
            if hit is not None:
                self.cache_hits += 1
                if alias is not None:
                    self.cache.add_alias(alias, key)
                return hit
        self.cache_misses += 1
        if len(request.items) == 1 and nonce is None:
            item = request.items[0]
            # Single flight: concurrent misses for one request share one lookup.
            pending = self._inflight.get(key)
            if pending is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    return await asyncio.shield(pending)
                if not pending.cancelled():
                    raise asyncio.CancelledError  # this request itself was cancelled
            future: asyncio.Future[OcspAnswer] = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            try:
                hit = await self._single_answer(first, item)
            except asyncio.CancelledError:
                future.cancel()  # waiters fall back to their own lookup
                raise
            except Exception as exc:
                future.set_exception(exc)
                future.exception()  # marked retrieved: waiters re-raise it themselves
                raise
            finally:
                self._inflight.pop(key, None)
            self._remember(key, hit, certs, body=alias)
            future.set_result(hit)
            return hit
        singles = [
            self._single(
                await self._repo.get_certificate(first.ca.id, Serial(item.serial)), item.raw
            )
            for item in request.items
        ]
        self._take_live()
        der, this_update, next_update = await self._sign(first, singles, nonce=nonce)
        answer = OcspAnswer.signed(
            der, this_update=this_update, next_update=next_update, cacheable=nonce is None
        )
        if nonce is None:
            self._remember(key, answer, certs, body=alias)
        return answer

    async def _single_answer(self, info: _CaInfo, item: ocsp_codec.CertId) -> OcspAnswer:
        canonical = item.hash_name == "sha1" and item.raw == self._canonical_id(info, item.serial)
        if canonical:
            stored = await self._store.get_response(info.ca.id, Serial(item.serial))
            now = self._clock.now()
            if (
                stored is None
                or stored.this_update <= now - self.settings.refresh_after
                or stored.next_update <= now + timedelta(seconds=_EXPIRY_MARGIN)
            ):
                rec = await self._repo.get_certificate(info.ca.id, Serial(item.serial))
                if rec is not None:
                    fresh = await self.presign(rec)
                    # An offline CA's answer is not re-signed here: serve it to its end.
                    still_valid = stored is not None and stored.next_update > now
                    stored = fresh or (stored if still_valid else None)
                else:
                    stored = None  # unknown serial: answered, never stored
            if stored is not None:
                return OcspAnswer.signed(
                    stored.der,
                    this_update=stored.this_update,
                    next_update=stored.next_update,
                    cacheable=True,
                )
        single = self._single(
            await self._repo.get_certificate(info.ca.id, Serial(item.serial)), item.raw
        )
        self._take_live()
        der, this_update, next_update = await self._sign(info, [single], nonce=None)
        return OcspAnswer.signed(
            der, this_update=this_update, next_update=next_update, cacheable=True
        )

    # ------------------------------------------------------------------ background

    async def poll_changes(self, *, limit: int = 100_000) -> int:
        """Drop cached answers whose stored response another process replaced; return how many.

        Each poll reads the changes stamped after the previous poll's wall-clock
        time minus ``_POLL_OVERLAP`` (a write commits a little after it is
        stamped, and nodes' clocks differ slightly), and skips changes already
        handled, so each replacement invalidates once and a bulk write is read
        for a few polls only. With nothing cached there is nothing to drop, and
        storage is not read (an EST- or ACME-only node issuing hundreds of
        certificates a second would otherwise re-read each new response for
        several polls); answers cached later are read after this poll, and the
        next poll's overlap still covers changes committed late.
        """
        now = self._clock.now()
        if not len(self.cache):
            self._seen = now
            self._handled.clear()
            return 0
        since = (self._seen or now) - _POLL_OVERLAP
        changed = await self._store.changed_since(since, limit=limit)
        fresh = [
            (ca_id, int(serial), at)
            for ca_id, serial, at in changed
            if self._handled.get((ca_id, int(serial))) != at
        ]
        dropped = self.invalidate((ca_id, serial) for ca_id, serial, _ in fresh)
        for ca_id, serial, at in fresh:
            self._handled[(ca_id, serial)] = at
        # Truncated: continue from the last change read rather than from now.
        self._seen = now if len(changed) < limit else changed[-1][2] + _POLL_OVERLAP
        horizon = self._seen - _POLL_OVERLAP
        self._handled = {k: at for k, at in self._handled.items() if at >= horizon}
        return dropped

    async def refresh_stale(self, *, batch: int = 500, budget: float = 5.0) -> int:
        """Re-sign stored responses older than ``refresh_after``; return how many."""
        started = time.monotonic()
        done = 0
        while time.monotonic() - started < budget:
            now = self._clock.now()
            stale = await self._store.stale_responses(
                now - self.settings.refresh_after, valid_after=now, limit=batch
            )
            if not stale:
                break
            signed = 0
            for ca_id, serial in stale:
                rec = await self._repo.get_certificate(ca_id, serial)
                if rec is not None and await self.presign(rec) is not None:
                    signed += 1
            done += signed
            # Offline CAs' answers stay stale here until their ceremony: no progress, stop.
            if len(stale) < batch or not signed:
                break
        return done

    async def reload(self) -> None:
        """Re-read the CAs (created, activated or disabled since) and forget signers."""
        await self._load_cas()
        now = self._now()
        self._signers = {
            k: v for k, v in self._signers.items() if v.not_after - now > self._rotate_margin()
        }
