"""Configuration: parsing, validation, and refusal of unsafe production settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from idp.config import ConfigError, load


def test_defaults_are_a_development_instance() -> None:
    settings = load({})
    assert settings.issuer == "http://localhost:8000"
    assert settings.is_dev
    assert settings.bcrypt_rounds == 12
    assert settings.sqlalchemy_url.startswith("sqlite:///") and settings.redis_url is None


def test_production_refuses_plain_http() -> None:
    with pytest.raises(ConfigError, match="BASCULE_ISSUER"):
        load({"BASCULE_ISSUER": "http://id.acme.test"})
    settings = load(
        {"BASCULE_ISSUER": "https://id.acme.test", "BASCULE_GATEWAY_URL": "https://gw.acme.test"}
    )
    assert not settings.is_dev
    assert load({"BASCULE_ISSUER": "http://id.acme.test", "BASCULE_DEV": "1"}).is_dev


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BASCULE_BCRYPT_ROUNDS", "3"),
        ("BASCULE_BCRYPT_ROUNDS", "twelve"),
        ("BASCULE_ISSUER", "id.acme.test"),
        ("BASCULE_ISSUER", "https://id.acme.test/path"),
        ("BASCULE_DEV", "maybe"),
        ("BASCULE_REDIS_URL", "memcached://x"),
        ("BASCULE_LOG_FORMAT", "xml"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load({name: value})


def test_toml_file_and_environment_precedence(tmp_path: Path) -> None:
    config = tmp_path / "bascule.toml"
    config.write_text(
        'bcrypt_rounds = 10\nissuer = "https://id.acme.test"\ngateway_url = "https://gw.acme.test"\n'
    )
    settings = load({"BASCULE_CONFIG": str(config), "BASCULE_BCRYPT_ROUNDS": "11"})
    assert settings.bcrypt_rounds == 11 and settings.issuer == "https://id.acme.test"
    config.write_text("nonsense = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load({"BASCULE_CONFIG": str(config)})
    config.write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load({"BASCULE_CONFIG": str(config)})
