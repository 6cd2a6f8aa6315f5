from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import pytest

from corral_system.config import ConfigError, load_settings


class Example(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    redis_url: str = "redis://127.0.0.1:6379/0"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    ratio: float = 0.5


def test_defaults_apply_when_nothing_is_set() -> None:
    assert load_settings(Example, {}) == Example()


def test_environment_variables_are_converted_to_the_field_types() -> None:
    settings = load_settings(Example, {"CORRAL_PORT": "9000", "CORRAL_RATIO": "0.25", "OTHER": "x"})
    assert (settings.port, settings.ratio) == (9000, 0.25)


def test_a_bad_value_names_the_variable_to_fix() -> None:
    with pytest.raises(ConfigError, match="CORRAL_PORT"):
        load_settings(Example, {"CORRAL_PORT": "eighty"})
    with pytest.raises(ConfigError, match="CORRAL_PORT.*<= 65535"):
        load_settings(Example, {"CORRAL_PORT": "70000"})


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(Example, {"CORRAL_PORT": "0", "CORRAL_RATIO": "half"})
    assert "CORRAL_PORT" in str(raised.value) and "CORRAL_RATIO" in str(raised.value)


def test_a_file_gives_values_and_the_environment_overrides_it(tmp_path: Path) -> None:
    file = tmp_path / "corral.toml"
    file.write_text('port = 7000\nredis_url = "redis://elsewhere:6379/1"\n')
    settings = load_settings(Example, {"CORRAL_CONFIG_FILE": str(file), "CORRAL_PORT": "7001"})
    assert settings == Example(redis_url="redis://elsewhere:6379/1", port=7001)


def test_unknown_settings_in_a_file_are_refused(tmp_path: Path) -> None:
    file = tmp_path / "corral.toml"
    file.write_text("prot = 7000\n")
    with pytest.raises(ConfigError, match="unknown settings prot"):
        load_settings(Example, {"CORRAL_CONFIG_FILE": str(file)})


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(Example, {"CORRAL_CONFIG_FILE": str(tmp_path / "missing.toml")})


class Paired(msgspec.Struct, frozen=True, kw_only=True):
    lease_ms: int = 10_000
    renew_ms: int = 2_500

    def __post_init__(self) -> None:
        if self.renew_ms >= self.lease_ms:
            raise ValueError("renew_ms must be shorter than lease_ms")


def test_a_rule_between_settings_is_checked_on_the_whole() -> None:
    assert load_settings(Paired, {"CORRAL_LEASE_MS": "1500", "CORRAL_RENEW_MS": "300"}) == Paired(
        lease_ms=1500, renew_ms=300
    )
    with pytest.raises(ConfigError, match="renew_ms must be shorter"):
        load_settings(Paired, {"CORRAL_LEASE_MS": "1500"})
