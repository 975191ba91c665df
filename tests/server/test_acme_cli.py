"""`privca acme eab ...` and the `--acme-*` flags of `privca serve`."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from server import acme_cli
from server.cli import build_parser, main
from server.config import ConfigError, load_settings


def test_eab_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    assert main(["ca", "create-root", "--data-dir", data, "root"]) == 0
    capsys.readouterr()
    assert main(["acme", "eab", "create", "--data-dir", data]) == 0
    kid, hmac_b64 = capsys.readouterr().out.split()
    assert len(base64.urlsafe_b64decode(hmac_b64 + "=")) == 32
    assert main(["acme", "eab", "list", "--data-dir", data, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["kid"], k["revoked"]) for k in listed] == [(kid, False)]
    assert main(["acme", "eab", "revoke", "--data-dir", data, kid]) == 0
    assert f"revoked EAB key {kid}" in capsys.readouterr().out
    assert main(["acme", "eab", "list", "--data-dir", data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["revoked"] is True
    assert main(["acme", "eab", "revoke", "--data-dir", data, "unknown"]) == 1
    assert "no EAB key" in capsys.readouterr().err


def test_serve_flags_override_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "privca.toml"
    cfg.write_text('[acme]\nhttp01_port = 8888\ndns_resolver = "127.0.0.1:53"\n')
    args = build_parser().parse_args(
        [
            "serve",
            "--config",
            str(cfg),
            "--acme-resolve-all-to",
            "127.0.0.1",
            "--acme-tlsalpn01-port",
            "5001",
        ]
    )
    settings = acme_cli.apply_serve_flags(load_settings(cfg), args)
    assert settings.acme.http01_port == 8888
    assert settings.acme.tlsalpn01_port == 5001
    assert settings.acme.resolve_all_to == "127.0.0.1"
    engine = settings.acme.to_engine()
    assert engine.validation.http01_port == 8888
    assert engine.validation.resolve_all_to == "127.0.0.1"


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(["--acme-resolve-all-to", "not-an-ip"], id="fail/resolve-all-to"),
        pytest.param(["--acme-dns-resolver", "nohostport"], id="fail/dns-resolver"),
        pytest.param(["--acme-http01-port", "70000"], id="fail/port"),
    ],
)
def test_bad_serve_flags_are_config_errors(flags: list[str]) -> None:
    args = build_parser().parse_args(["serve", *flags])
    with pytest.raises(ConfigError):
        acme_cli.apply_serve_flags(load_settings(None), args)
