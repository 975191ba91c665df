"""The migration history stays one line: ``make migration`` and ``upgrade heads`` need one head."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from server.store.database import _MIGRATIONS, _upgrade


def _scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def test_one_head() -> None:
    heads = _scripts().get_heads()
    assert len(heads) == 1, f"migration history has several heads {heads}: add a merge revision"


def test_upgrade_reaches_the_head(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        _upgrade(conn)
        (version,) = conn.exec_driver_sql("SELECT version_num FROM alembic_version").one()
    assert version == _scripts().get_current_head()
