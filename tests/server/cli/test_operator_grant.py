"""``[operator]``: which CAs (with their subtrees) and profiles the CLI operator may issue from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.cli import main


def _privca(data: str, config: Path, *args: str) -> int:
    return main([*args[:2], "--data-dir", data, "--config", str(config), *args[2:]])


@pytest.fixture
def setup(tmp_path: Path) -> tuple[str, Path]:
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    data = str(tmp_path / "data")
    config = tmp_path / "privca.toml"
    config.write_text('[operator]\ncas = ["team"]\nprofiles = ["tls-server"]\n')
    assert _privca(data, config, "ca", "create-root", "root") == 0
    assert _privca(data, config, "ca", "create-sub", "team", "--parent", "root") == 0
    assert _privca(data, config, "ca", "create-sub", "below", "--parent", "team") == 0
    assert _privca(data, config, "ca", "create-sub", "other", "--parent", "root") == 0
    return data, config


def _issue(data: str, config: Path, ca: str, profile: str = "tls-server") -> int:
    return _privca(
        data, config, "cert", "issue", "--ca", ca, "--profile", profile, "--san", "dns:x.internal"
    )


def test_operator_grant_scopes_cas_and_profiles(
    setup: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, config = setup
    assert _issue(data, config, "team") == 0
    assert _issue(data, config, "below") == 0  # a CA's grant covers its subtree
    capsys.readouterr()
    assert _issue(data, config, "other") == 1
    assert "grant.ca: CA other is not granted" in capsys.readouterr().err
    assert _issue(data, config, "root") == 1
    assert "grant.ca" in capsys.readouterr().err
    assert _issue(data, config, "team", profile="short-lived") == 1
    assert "grant.profile: short-lived is not granted" in capsys.readouterr().err


def test_default_operator_grant_is_every_ca(tmp_path: Path) -> None:
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    data = str(tmp_path / "data")
    config = tmp_path / "privca.toml"
    config.write_text("")
    assert _privca(data, config, "ca", "create-root", "root") == 0
    assert _privca(data, config, "ca", "create-sub", "other", "--parent", "root") == 0
    assert _issue(data, config, "other") == 0
    assert _issue(data, config, "root", profile="short-lived") == 0
