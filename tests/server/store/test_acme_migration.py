"""Migration 0006_acme_limits backfills what existing ACME rows already used (SQLite)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from server.store import database

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
