"""Developer tool: autogenerate an Alembic revision from the models (``make migration``)."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine


def main(message: str, rev_id: str) -> None:
    """Write migrations/versions/<rev_id>_<message>.py against a fresh in-memory schema."""
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
        command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id or None)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
