"""ACME migrations fill in what existing rows imply (SQLite): 0006_acme_limits the EAB
keys and replacement slots already used, 0011_acme_claim_times the claims' times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from server.store import database
from server.store.acme_repository import SqlAcmeRepository
from server.store.database import Database, sqlite_url
from tests.support import TEST_SEALER

NOW = "2026-06-01 12:00:00+00:00"


def _upgrade(url: str, target: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(database._MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
    engine.dispose()


def test_used_eab_keys_stay_used_and_replacements_keep_their_slot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _upgrade(url, "0005_acme_directories")
    engine = create_engine(url)
    with engine.begin() as conn:
        for kid in ("used", "fresh"):
            conn.execute(
                text(
                    "INSERT INTO acme_eab_keys (kid, hmac_key, created_at, revoked)"
                    " VALUES (:kid, x'00', :now, 0)"
                ),
                {"kid": kid, "now": NOW},
            )
        conn.execute(
            text(
                "INSERT INTO acme_accounts (id, thumbprint, jwk, spki, status, contact,"
                " tos_agreed, created_at, eab_kid) VALUES ('a1', 't1', '{}', x'00', 'valid',"
                " '[]', 1, :now, 'used')"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO acme_orders (id, account_id, status, identifiers, authz_ids,"
                " expires, created_at, profile, replaces) VALUES ('o1', 'a1', 'pending', '[]',"
                " '[]', :now, :now, 'tls-server', 'cert-1')"
            ),
            {"now": NOW},
        )
    engine.dispose()
    _upgrade(url, "heads")
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT kid, bindings FROM acme_eab_keys")).all()
        bindings: dict[str, int] = {r[0]: r[1] for r in rows}
        slots = conn.execute(text("SELECT cert_id, order_id FROM acme_replacements")).all()
    engine.dispose()
    assert bindings == {"used": 1, "fresh": 0}
    assert [tuple(r) for r in slots] == [("cert-1", "o1")]


async def test_claims_open_at_upgrade_get_the_upgrade_time(tmp_path: Path) -> None:
    # 0011_acme_claim_times: a claim from before it is recovered once the bound passes.
    path = tmp_path / "old.db"
    _upgrade(f"sqlite:///{path}", "0010_audit_chain")
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for authz_id, validating in (("z-stuck", 1), ("z-idle", 0)):
            conn.execute(
                text(
                    "INSERT INTO acme_authzs (id, account_id, ident_type, ident_value, status,"
                    " expires, wildcard, challenges, validating) VALUES (:id, 'a1', 'dns',"
                    " 'x.internal', 'pending', :now, 0, '[]', :validating)"
                ),
                {"id": authz_id, "now": NOW, "validating": validating},
            )
        for order_id, status in (("o-stuck", "processing"), ("o-idle", "pending")):
            conn.execute(
                text(
                    "INSERT INTO acme_orders (id, account_id, status, identifiers, authz_ids,"
                    " expires, created_at, profile) VALUES (:id, 'a1', :status, '[]', '[]',"
                    " :now, :now, 'tls-server')"
                ),
                {"id": order_id, "status": status, "now": NOW},
            )
    engine.dispose()
    before = datetime.now(UTC)
    _upgrade(f"sqlite:///{path}", "heads")
    db = Database(sqlite_url(path))
    try:
        repo = SqlAcmeRepository(db, TEST_SEALER)
        assert await repo.stuck_authzs(claimed_before=before, limit=10) == []
        assert await repo.stuck_orders(claimed_before=before, limit=10) == []
        later = datetime.now(UTC) + timedelta(seconds=1)
        stuck = await repo.stuck_authzs(claimed_before=later, limit=10)
        assert [a.id for a in stuck] == ["z-stuck"]
        claims = await repo.stuck_orders(claimed_before=later, limit=10)
        assert [(c.order.id, c.csr_key_sha256) for c in claims] == [("o-stuck", None)]
        assert before <= claims[0].since < later
    finally:
        await db.close()
