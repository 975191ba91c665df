"""Settings: TOML + overrides, validated once; bad values stop startup with the field named."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from server.ca.est import api as est_api
from server.config import ConfigError, load_settings, status_settings


def test_defaults_and_overrides(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path, https_port=9443, http_port=None)
    assert settings.https_port == 9443
    assert settings.http_port == 8080
    assert settings.db_url == f"sqlite+aiosqlite:///{tmp_path}/privca.db"
    assert settings.http_base_url == "http://127.0.0.1:8080"
    assert settings.engine_settings().default_ca == "issuing"


def test_toml_file(tmp_path: Path) -> None:
    cfg = tmp_path / "privca.toml"
    cfg.write_text(
        'database_url = "postgresql+asyncpg://u@db/privca"\n'
        'public_http_url = "http://pki.corp.internal/"\n'
        '[ca]\nissuing_name = "corp"\nkey_algorithm = "ec-p384"\n'
    )
    settings = load_settings(cfg)
    assert settings.db_url.startswith("postgresql+asyncpg://")
    assert settings.http_base_url == "http://pki.corp.internal"
    assert settings.ca.key_algorithm == "ec-p384"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("https_port = 70000\n", "https_port", id="fail/port-range"),
        pytest.param('[ca]\nkey_algorithm = "rsa1024"\n', "ca.key_algorithm", id="fail/weak-key"),
        pytest.param(
            'public_http_url = "https://x"\n', "public_http_url", id="fail/https-revocation-url"
        ),
        pytest.param("unknown_option = 1\n", "unknown_option", id="fail/unknown-key"),
        pytest.param("https_port = [\n", "cannot read", id="fail/toml-syntax"),
        pytest.param(
            '[acme.directories.acct]\nca = "x"\n', "acme.directories", id="fail/reserved-directory"
        ),
        pytest.param("[acme.directories.corp]\n", "acme.directories.corp.ca", id="fail/no-ca"),
        pytest.param(
            "[revocation]\nocsp_signer_retention_hours = 0\n",
            "revocation.ocsp_signer_retention_hours",
            id="fail/signer-retention-zero",
        ),
        pytest.param(
            '[revocation]\nocsp_signer_retention_hours = "1d"\n',
            "revocation.ocsp_signer_retention_hours",
            id="fail/signer-retention-not-a-number",
        ),
        pytest.param(
            '[acme.directories.corp]\nca = "x"\nallow_ip = ["10.0.0.300/8"]\n',
            "acme.directories.corp.allow_ip",
            id="fail/bad-cidr",
        ),
    ],
)
def test_bad_configuration_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert field in str(err.value)


def test_example_configs_are_valid() -> None:
    for path in sorted((Path(__file__).resolve().parents[2] / "config").glob("*.toml")):
        load_settings(path)


def test_slow_client_and_ocsp_cache_limits(tmp_path: Path) -> None:
    defaults = load_settings(None, data_dir=tmp_path)
    assert (defaults.header_timeout_seconds, defaults.body_timeout_seconds) == (10.0, 30.0)
    assert defaults.max_connections == 4096
    cfg = tmp_path / "privca.toml"
    cfg.write_text(
        "header_timeout_seconds = 5\nbody_timeout_seconds = 20\nmax_connections = 100\n"
        "[revocation]\nocsp_cache_bytes = 1048576\nocsp_live_signatures_per_second = 7\n"
    )
    settings = load_settings(cfg)
    assert (settings.header_timeout_seconds, settings.body_timeout_seconds) == (5.0, 20.0)
    assert settings.max_connections == 100
    ocsp = status_settings(settings).ocsp
    assert (ocsp.cache_bytes, ocsp.live_signatures_per_second) == (1048576, 7.0)


def test_ocsp_signer_retention(tmp_path: Path) -> None:
    assert status_settings(load_settings(None)).signer_retention == timedelta(days=1)
    cfg = tmp_path / "privca.toml"
    cfg.write_text("[revocation]\nocsp_signer_retention_hours = 72\n")
    assert status_settings(load_settings(cfg)).signer_retention == timedelta(hours=72)


def test_est_label_policy_from_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "privca.toml"
    cfg.write_text(
        "[est.labels.sensors]\n"
        'allow_dns = ["iot.corp.internal"]\n'
        "allow_wildcard = true\n"
        'allow_ip = ["10.20.0.0/16"]\n'
        'allow_uri = ["spiffe://corp/ns/iot/*"]\n'
        'allow_email = ["corp.example"]\n'
        'subject = ["CN=fire-sensor-*"]\n'
        "max_days = 90\n"
        "[est.labels.plain]\n"
    )
    labels = load_settings(cfg).est.to_labels()
    sensors = labels["sensors"]
    assert sensors.dns_suffixes == ("iot.corp.internal",)
    assert sensors.allow_wildcard
    assert [str(n) for n in sensors.ip_ranges] == ["10.20.0.0/16"]
    assert sensors.uri_patterns == ("spiffe://corp/ns/iot/*",)
    assert sensors.email_domains == ("corp.example",)
    assert sensors.subject_patterns == ("CN=fire-sensor-*",)
    assert sensors.max_days == 90
    plain = labels["plain"]
    assert (plain.dns_suffixes, plain.ip_ranges, plain.uri_patterns, plain.email_domains) == (
        (),
        (),
        (),
        (),
    )
    assert (plain.allow_wildcard, plain.subject_patterns, plain.max_days) == (False, (), None)
    for bad, field in (
        ('allow_ip = ["10.0.0/33"]', "allow_ip"),
        ("max_days = 0", "max_days"),
        ('subject = ["fire-sensor-*"]', "subject"),
    ):
        cfg.write_text(f"[est.labels.x]\n{bad}\n")
        with pytest.raises(ConfigError, match=field):
            load_settings(cfg)


def test_acme_directories(tmp_path: Path) -> None:
    cfg = tmp_path / "privca.toml"
    cfg.write_text(
        "[acme]\neab_required = true\n"
        '[acme.directories.corp]\nca = "corp"\nallow_dns = ["corp.example"]\n'
        'allow_ip = ["192.0.2.0/24"]\nwildcard = false\neab_required = false\n'
        'profiles = ["shortlived"]\n'
        '[acme.directories.lab]\nca = "lab"\n'
    )
    dirs = load_settings(cfg).acme.to_directories()
    corp, lab = dirs["corp"], dirs["lab"]
    assert (corp.name, corp.ca, corp.source) == ("corp", "corp", "config")
    assert corp.dns_suffixes == ("corp.example",)
    assert [str(n) for n in corp.ip_ranges] == ["192.0.2.0/24"]
    assert corp.wildcard is False
    assert corp.eab_required is False
    assert corp.profiles == ("shortlived",)
    # Defaults: any name and address, wildcards, every profile, the global EAB setting.
    assert lab.dns_suffixes == ("*",)
    assert [str(n) for n in lab.ip_ranges] == ["0.0.0.0/0", "::/0"]
    assert lab.wildcard is True
    assert lab.profiles is None
    assert lab.eab_required is None


def test_est_login_limits(tmp_path: Path) -> None:
    defaults = load_settings(None, data_dir=tmp_path).est.to_login_limits()
    assert defaults == est_api.LoginLimits(per_address=30, per_account=10)
    cfg = tmp_path / "privca.toml"
    cfg.write_text(
        "[est]\nfailed_logins_per_minute = 50\nfailed_logins_per_account_per_minute = 4\n"
        "password_checks_in_flight = 3\npassword_check_wait_seconds = 0.5\n"
    )
    assert load_settings(cfg).est.to_login_limits() == est_api.LoginLimits(
        per_address=50, per_account=4, concurrent_checks=3, check_wait=0.5
    )
