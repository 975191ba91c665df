"""`privca acme eab ...`: External Account Binding keys in the data dir."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from server.cli import main


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
