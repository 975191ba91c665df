"""`privca est ...` commands (labels, accounts, approvals) on a real data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_est_label_user_pending_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path / "data")
    assert _run(capsys, "ca", "create-root", "--data-dir", d, "root")[0] == 0
    assert _run(capsys, "ca", "create-sub", "--data-dir", d, "issuing", "--parent", "root")[0] == 0
    code, out, _ = _run(
        capsys, "est", "user", "add", "--data-dir", d, "dev1", "--password", "s3cret-pass"
    )
    assert code == 0
    assert "dev1" in out
    code, out, _ = _run(
        capsys,
        "est", "label", "add", "--data-dir", d, "factory",
        "--profile", "tls-client", "--auth", "cert", "--approval-required",
        "--csrattr", "1.2.840.113549.1.9.7",
    )  # fmt: skip
    assert code == 0, out
    code, out, _ = _run(capsys, "est", "label", "list", "--data-dir", d, "--json")
    labels = {lb["name"]: lb for lb in json.loads(out)}
    assert labels["default"]["source"] == "built-in"
    assert labels["factory"]["auth"] == ["cert"]
    assert labels["factory"]["approval_required"] is True
    assert labels["factory"]["csrattrs"] == [{"oid": "1.2.840.113549.1.9.7", "values": []}]
    assert labels["default"]["csrattrs"] is None
    # An OID GET csrattrs could not encode is refused when the label is made.
    code, _, err = _run(
        capsys, "est", "label", "add", "--data-dir", d, "badattrs", "--csrattr", "1.2.3.=4.5"
    )
    assert code == 1
    assert "'1.2.3.' is not an OID" in err
    code, out, _ = _run(
        capsys,
        "est",
        "user",
        "add",
        "--data-dir",
        d,
        "st1",
        "--password",
        "s3cret-pass",
        "--label",
        "factory",
    )
    assert code == 0
    code, out, _ = _run(capsys, "est", "user", "list", "--data-dir", d)
    assert "factory" in out
    assert "st1" in out
    assert "s3cret" not in out
    assert "pbkdf2" not in out
    # Refusals: unknown label, short password, unknown pending id, duplicate label.
    code, _, err = _run(
        capsys,
        "est",
        "user",
        "add",
        "--data-dir",
        d,
        "x",
        "--password",
        "s3cret-pass",
        "--label",
        "ghost",
    )
    assert code == 1
    assert "unknown EST label" in err
    code, _, err = _run(capsys, "est", "user", "add", "--data-dir", d, "x", "--password", "short")
    assert code == 1
    code, _, err = _run(capsys, "est", "pending", "approve", "--data-dir", d, "nope")
    assert code == 1
    assert "no pending" in err
    code, _, err = _run(capsys, "est", "label", "add", "--data-dir", d, "factory")
    assert code == 1
    assert "already exists" in err
    code, out, _ = _run(capsys, "est", "pending", "list", "--data-dir", d)
    assert code == 0
    assert out.startswith("ID")
    assert _run(capsys, "est", "label", "remove", "--data-dir", d, "factory")[0] == 0
    code, out, _ = _run(capsys, "est", "user", "list", "--data-dir", d, "--label", "factory")
    assert out == ""


def test_est_label_policy_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "data")
    assert _run(capsys, "ca", "create-root", "--data-dir", d, "root")[0] == 0
    assert _run(capsys, "ca", "create-sub", "--data-dir", d, "issuing", "--parent", "root")[0] == 0
    code, out, err = _run(
        capsys,
        "est", "label", "add", "--data-dir", d, "sensors",
        "--allow-dns", "iot.corp.internal", "--allow-dns", "corp.example", "--allow-wildcard",
        "--allow-ip", "10.20.0.0/16", "--allow-uri", "spiffe://corp/ns/iot/*",
        "--allow-email", "corp.example", "--subject", "CN=fire-sensor-*", "--max-days", "90",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = _run(capsys, "est", "label", "list", "--data-dir", d, "--json")
    labels = {lb["name"]: lb for lb in json.loads(out)}
    assert {
        k: v for k, v in labels["sensors"].items() if k.startswith(("allow", "sub", "max"))
    } == {
        "allow_subject_change": False,
        "allow_dns": ["iot.corp.internal", "corp.example"],
        "allow_wildcard": True,
        "allow_ip": ["10.20.0.0/16"],
        "allow_uri": ["spiffe://corp/ns/iot/*"],
        "allow_email": ["corp.example"],
        "subject": ["CN=fire-sensor-*"],
        "max_days": 90,
    }
    assert labels["default"]["allow_dns"] == []
    code, out, _ = _run(capsys, "est", "label", "list", "--data-dir", d)
    assert "device identities only" in out
    assert "dns=iot.corp.internal dns=corp.example wildcard ip=10.20.0.0/16" in out
    # Refusals: a wildcard with no DNS suffix, a bad range, zero days.
    code, _, err = _run(capsys, "est", "label", "add", "--data-dir", d, "w", "--allow-wildcard")
    assert code == 1
    assert "wildcards need an allowed DNS suffix" in err
    with pytest.raises(SystemExit):
        main(["est", "label", "add", "--data-dir", d, "x", "--allow-ip", "10.0.0/33"])
    assert "not an IP range" in capsys.readouterr().err
    code, _, err = _run(capsys, "est", "label", "add", "--data-dir", d, "z", "--max-days", "0")
    assert code == 1
    # An account narrower than its label.
    code, _, err = _run(
        capsys,
        "est", "user", "add", "--data-dir", d, "lab", "--password", "s3cret-pass",
        "--label", "sensors", "--allow-dns", "lab.iot.corp.internal", "--max-days", "7",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = _run(capsys, "est", "user", "list", "--data-dir", d, "--label", "sensors")
    assert "dns=lab.iot.corp.internal max-days=7" in out
    code, _, err = _run(
        capsys,
        "est", "user", "add", "--data-dir", d, "wide", "--password", "s3cret-pass",
        "--label", "sensors", "--allow-dns", "evil.example",
    )  # fmt: skip
    assert code == 1
    assert "not under the label's" in err
