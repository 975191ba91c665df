"""``privca matter ...`` against a data dir: hierarchy, DAC bundles, NOCs, refusals."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.ca.matter import rules, tlv
from server.ca.matter.rules import MatterKind
from server.cli import main
from tests.support import openssl


def _privca(*args: str) -> int:
    return main(list(args))


def _csr_file(path: Path, curve: ec.EllipticCurve | None = None) -> Path:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def data(tmp_path: Path) -> str:
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    return str(tmp_path / "data")


def _export(data: str, name: str, path: Path) -> Path:
    assert _privca("ca", "export", "--data-dir", data, name, "--out", str(path)) == 0
    return path


def test_attestation_hierarchy_and_dac_bundles(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _privca("matter", "paa", "create", "--data-dir", data, "--name", "paa", "--vid", "FFF1")
        == 0
    )
    assert "VID FFF1" in capsys.readouterr().out
    assert _privca("matter", "paa", "create", "--data-dir", data, "--name", "paa-any") == 0
    assert "non-VID-scoped" in capsys.readouterr().out
    for name, parent, vid in (("pai", "paa", "FFF1"), ("pai-any", "paa-any", "FFF2")):
        assert (
            _privca(
                "matter", "pai", "create", "--data-dir", data, "--name", name,
                "--paa", parent, "--vid", vid, "--pid", "8000",
            )
            == 0
        )  # fmt: skip
    out = tmp_path / "dacs"
    assert (
        _privca(
            "matter", "dac", "issue", "--data-dir", data, "--pai", "pai",
            "--vid", "FFF1", "--pid", "8000", "--count", "5", "--out", str(out),
        )
        == 0
    )  # fmt: skip
    captured = capsys.readouterr()
    assert "issued 5 DACs" in captured.out
    assert "5/5" in captured.err, "tqdm progress bar on stderr"
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["pai"], manifest["vid"], manifest["pid"], manifest["count"]) == (
        "pai",
        "FFF1",
        "8000",
        5,
    )
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["serial"] for r in rows] == [d["serial"] for d in manifest["devices"]]
    paa_pem = _export(data, "paa", tmp_path / "paa.pem")
    paa = x509.load_pem_x509_certificate(paa_pem.read_bytes())
    for device in manifest["devices"]:
        folder = out / device["device"]
        assert sorted(p.name for p in folder.iterdir()) == [
            "dac.der",
            "dac.pem",
            "key.pem",
            "pai.pem",
        ]
        assert (folder / "key.pem").stat().st_mode & 0o777 == 0o600
        dac = x509.load_pem_x509_certificate((folder / "dac.pem").read_bytes())
        assert dac.public_bytes(serialization.Encoding.DER) == (folder / "dac.der").read_bytes()
        assert format(dac.serial_number, "X") == device["serial"]
        pai = x509.load_pem_x509_certificate((folder / "pai.pem").read_bytes())
        rules.validate_chain(dac, MatterKind.DAC, [pai, paa])
        result = openssl(
            "verify", "-x509_strict", "-CAfile", str(paa_pem),
            "-untrusted", str(folder / "pai.pem"), str(folder / "dac.pem"),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    # The DACs are in the inventory, with their profile.
    assert _privca("cert", "list", "--data-dir", data, "--ca", "pai") == 0
    assert capsys.readouterr().out.count("matter-dac") == 5
    # show derives the ids from the certificate.
    assert _privca("matter", "show", "--data-dir", data, "pai-any") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["kind"], shown["vid"], shown["pid"]) == ("matter-pai", "FFF2", "8000")


def test_dacs_from_csr_dir(data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _privca("matter", "paa", "create", "--data-dir", data, "--name", "paa") == 0
    assert (
        _privca(
            "matter", "pai", "create", "--data-dir", data, "--name", "pai",
            "--paa", "paa", "--vid", "FFF1",
        )
        == 0
    )  # fmt: skip
    csrs = tmp_path / "csrs"
    csrs.mkdir()
    for i in range(3):
        _csr_file(csrs / f"dev{i}.csr")
    out = tmp_path / "out"
    args = ["matter", "dac", "issue", "--data-dir", data, "--pai", "pai", "--vid", "FFF1"]
    assert _privca(*args, "--pid", "8001", "--csr-dir", str(csrs), "--out", str(out)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [d["csr"] for d in manifest["devices"]] == ["dev0.csr", "dev1.csr", "dev2.csr"]
    assert all(d["key_pem"] is None for d in manifest["devices"])
    assert not (out / manifest["devices"][0]["device"] / "key.pem").exists()
    capsys.readouterr()
    # Negative control: one P-384 CSR refuses the whole run, naming the file and the rule.
    _csr_file(csrs / "dev9.csr", ec.SECP384R1())
    before = _count_dacs(data, capsys)
    assert (
        _privca(*args, "--pid", "8001", "--csr-dir", str(csrs), "--out", str(tmp_path / "o2")) == 1
    )
    err = capsys.readouterr().err
    assert "dev9.csr" in err
    assert "matter-curve" in err
    assert _count_dacs(data, capsys) == before


def _count_dacs(data: str, capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    assert _privca("cert", "list", "--data-dir", data, "--ca", "pai", "--limit", "1000") == 0
    return capsys.readouterr().out.count("matter-dac")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["pai", "create", "--name", "p2", "--paa", "paa", "--vid", "FFF2"],
            "chain-vid-mismatch",
            id="fail/pai-vid-mismatch",
        ),
        pytest.param(
            ["pai", "create", "--name", "p2", "--paa", "pai", "--vid", "FFF1"],
            "chain-depth",
            id="fail/pai-under-pai",
        ),
        pytest.param(
            ["dac", "issue", "--pai", "pai", "--vid", "FFF1", "--pid", "8001", "--count", "2"],
            "chain-pid-mismatch",
            id="fail/dac-pid-mismatch",
        ),
        pytest.param(
            ["dac", "issue", "--pai", "paa", "--vid", "FFF1", "--pid", "8000", "--count", "2"],
            "chain-issuer-kind",
            id="fail/dac-from-paa",
        ),
        pytest.param(
            ["dac", "issue", "--pai", "pai", "--vid", "FFF1", "--pid", "8000", "--count", "0"],
            "at least 1",
            id="fail/zero-count",
        ),
    ],
)
def test_refusals(
    data: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert (
        _privca("matter", "paa", "create", "--data-dir", data, "--name", "paa", "--vid", "FFF1")
        == 0
    )
    assert (
        _privca(
            "matter", "pai", "create", "--data-dir", data, "--name", "pai",
            "--paa", "paa", "--vid", "FFF1", "--pid", "8000",
        )
        == 0
    )  # fmt: skip
    before = _count_dacs(data, capsys)
    extra = ["--out", str(tmp_path / "out")] if args[0] == "dac" else []
    assert _privca("matter", *args, "--data-dir", data, *extra) == 1
    assert message in capsys.readouterr().err
    assert _count_dacs(data, capsys) == before
    assert not (tmp_path / "out").exists(), "a refused run leaves no output directory"


def test_bad_hex_is_a_usage_error(data: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _privca("matter", "paa", "create", "--data-dir", data, "--name", "p", "--vid", "XYZ1")
    assert exc.value.code == 2
    assert "hex digits" in capsys.readouterr().err


def test_dac_out_dir_must_be_new(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _privca("matter", "paa", "create", "--data-dir", data, "--name", "paa", "--vid", "FFF1")
        == 0
    )
    args = ["matter", "pai", "create", "--data-dir", data, "--name", "pai", "--paa", "paa"]
    assert _privca(*args, "--vid", "FFF1") == 0
    out = tmp_path / "used"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    before = _count_dacs(data, capsys)
    assert (
        _privca(
            "matter", "dac", "issue", "--data-dir", data, "--pai", "pai", "--vid", "FFF1",
            "--pid", "8000", "--count", "1", "--out", str(out),
        )
        == 1
    )  # fmt: skip
    assert "not an empty directory" in capsys.readouterr().err
    assert _count_dacs(data, capsys) == before


def test_operational_rcac_icac_noc(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fabric = "FAB000000000001D"
    assert (
        _privca(
            "matter", "rcac", "create", "--data-dir", data, "--name", "rcac", "--fabric-id", fabric
        )
        == 0
    )
    assert (
        _privca("matter", "icac", "create", "--data-dir", data, "--name", "icac", "--rcac", "rcac")
        == 0
    )
    assert f"fabric {fabric}" in capsys.readouterr().out
    csr = _csr_file(tmp_path / "nocsr.pem")
    noc_pem, noc_tlv = tmp_path / "noc.pem", tmp_path / "noc.tlv"
    assert (
        _privca(
            "matter", "noc", "issue", "--data-dir", data, "--ca", "icac", "--csr", str(csr),
            "--fabric-id", fabric, "--node-id", "0000000000001234",
            "--cat", "FFFF0001", "--cat", "FFFE0001", "--out", str(noc_pem),
            "--tlv-out", str(noc_tlv),
        )
        == 0
    )  # fmt: skip
    noc, icac = x509.load_pem_x509_certificates(noc_pem.read_bytes())
    rcac = x509.load_pem_x509_certificate(_export(data, "rcac", tmp_path / "rcac.pem").read_bytes())
    rules.validate_chain(noc, MatterKind.NOC, [icac, rcac])
    ids = rules.extract_operational_ids(noc)
    assert (ids.node_id, ids.fabric_id, sorted(ids.cats)) == (
        0x1234,
        int(fabric, 16),
        [0xFFFE0001, 0xFFFF0001],
    )
    assert tlv.tlv_to_x509(noc_tlv.read_bytes()) == noc.public_bytes(serialization.Encoding.DER)
    capsys.readouterr()
    # Negative control: a different fabric id than the ICAC's is refused by rule.
    assert (
        _privca(
            "matter", "noc", "issue", "--data-dir", data, "--ca", "icac", "--csr", str(csr),
            "--fabric-id", "0000000000000001", "--node-id", "1", "--out", str(tmp_path / "x.pem"),
        )
        == 1
    )  # fmt: skip
    assert "chain-fabric-mismatch" in capsys.readouterr().err
    assert not (tmp_path / "x.pem").exists()
