from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, ClassVar

import msgspec
import pytest

from corral_system.config import (
    ConfigError,
    documented_block,
    field_comments,
    load_settings,
    markdown_block,
    text_table,
)


class Mode(enum.StrEnum):
    AUTO = "auto"
    V2 = "v2"


class Api(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    config_section: ClassVar[str] = "api"

    # Where to listen.
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    # A share.
    ratio: float = 0.5


class Redis(msgspec.Struct, frozen=True, kw_only=True):
    config_section: ClassVar[str] = "redis"
    env_prefix: ClassVar[str] = "CORRAL_REDIS_"
    env_names: ClassVar[Mapping[str, str]] = {"max_unfinished": "CORRAL_MAX_UNFINISHED_JOBS"}

    url: str = "redis://127.0.0.1:6379/0"
    max_unfinished: Annotated[int, msgspec.Meta(ge=1)] = 10
    mode: Mode = Mode.AUTO
    binary: str | None = None


class Worker(msgspec.Struct, frozen=True, kw_only=True):
    config_section: ClassVar[str] = "worker"

    lease_ms: int = 10_000
    renew_ms: int = 2_500

    def __post_init__(self) -> None:
        if self.renew_ms >= self.lease_ms:
            raise ValueError("renew_ms must be shorter than lease_ms")


API = (Api, Redis)
WORKER = (Worker, Redis)


def write(tmp_path: Path, text: str) -> dict[str, str]:
    file = tmp_path / "corral.toml"
    file.write_text(text)
    return {"CORRAL_CONFIG_FILE": str(file)}


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = load_settings(API, {})
    assert (settings.get(Api), settings.get(Redis)) == (Api(), Redis())
    assert {row.source for row in settings} == {"default"}


def test_each_section_names_its_variables_and_old_names_keep_working() -> None:
    settings = load_settings(
        API,
        {"CORRAL_PORT": "9000", "CORRAL_RATIO": "0.25", "CORRAL_REDIS_URL": "unix:///r.sock",
         "CORRAL_MAX_UNFINISHED_JOBS": "5", "CORRAL_REDIS_MODE": "v2", "OTHER": "x"},
    )
    assert (settings.get(Api).port, settings.get(Api).ratio) == (9000, 0.25)
    assert settings.get(Redis) == Redis(url="unix:///r.sock", max_unfinished=5, mode=Mode.V2)
    assert {row.variable for row in settings} == {
        "CORRAL_HOST", "CORRAL_PORT", "CORRAL_RATIO", "CORRAL_REDIS_URL", "CORRAL_MAX_UNFINISHED_JOBS",
        "CORRAL_REDIS_MODE", "CORRAL_REDIS_BINARY",
    }


def test_a_bad_value_names_the_variable_to_fix() -> None:
    with pytest.raises(ConfigError, match="CORRAL_PORT"):
        load_settings(API, {"CORRAL_PORT": "eighty"})
    with pytest.raises(ConfigError, match="CORRAL_PORT.*<= 65535"):
        load_settings(API, {"CORRAL_PORT": "70000"})
    with pytest.raises(ConfigError, match=r"CORRAL_REDIS_MODE: Invalid enum value 'v3' \(allowed: auto, v2\)"):
        load_settings(API, {"CORRAL_REDIS_MODE": "v3"})


def test_every_bad_value_of_every_section_is_reported_at_once(tmp_path: Path) -> None:
    environ = write(tmp_path, "[api]\nport = 0\n") | {"CORRAL_RATIO": "half", "CORRAL_MAX_UNFINISHED_JOBS": "0"}
    with pytest.raises(ConfigError) as raised:
        load_settings(API, environ)
    message = str(raised.value)
    assert f"CORRAL_PORT ([api] port in {tmp_path / 'corral.toml'})" in message
    assert "CORRAL_RATIO" in message and "CORRAL_MAX_UNFINISHED_JOBS" in message


def test_a_file_gives_values_and_the_environment_overrides_it(tmp_path: Path) -> None:
    environ = write(tmp_path, '[api]\nport = 7000\nhost = "0.0.0.0"\n[redis]\nurl = "redis://elsewhere:6379/1"\n')
    settings = load_settings(API, environ | {"CORRAL_PORT": "7001"})
    assert settings.get(Api) == Api(host="0.0.0.0", port=7001)
    assert settings.get(Redis).url == "redis://elsewhere:6379/1"
    sources = {row.name: row.source for row in settings}
    assert (sources["port"], sources["host"], sources["url"], sources["ratio"]) == ("env", "file", "file", "default")


def test_one_file_serves_both_deployables(tmp_path: Path) -> None:
    environ = write(tmp_path, "[api]\nport = 7000\n[worker]\nlease_ms = 3000\nrenew_ms = 1000\n[redis]\nmax_unfinished = 3\n")
    assert load_settings(API, environ).get(Api).port == 7000
    assert load_settings(WORKER, environ).get(Worker) == Worker(lease_ms=3000, renew_ms=1000)
    assert load_settings(WORKER, environ).get(Redis).max_unfinished == 3


def test_unknown_sections_and_unknown_keys_of_a_known_section_are_refused(tmp_path: Path) -> None:
    environ = write(tmp_path, "prot = 1\n[api]\nprot = 7000\n[reddis]\nurl = 'x'\n[worker]\nlese_ms = 1\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(API, environ)
    message = str(raised.value)
    assert "setting outside a section 'prot'" in message
    assert "[api] 'prot' is not a setting" in message
    assert "unknown section 'reddis'" in message
    # The worker's tables are the worker's business: the API neither reads nor judges them.
    assert "lese_ms" not in message


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(API, {"CORRAL_CONFIG_FILE": str(tmp_path / "missing.toml")})


def test_a_rule_between_settings_is_checked_on_the_whole_and_names_the_variables() -> None:
    settings = load_settings(WORKER, {"CORRAL_LEASE_MS": "1500", "CORRAL_RENEW_MS": "300"})
    assert settings.get(Worker) == Worker(lease_ms=1500, renew_ms=300)
    with pytest.raises(ConfigError, match=r"\[worker\] renew_ms must be shorter.*CORRAL_LEASE_MS, CORRAL_RENEW_MS"):
        load_settings(WORKER, {"CORRAL_LEASE_MS": "1500"})


def test_sections_whose_variables_clash_are_a_programming_error() -> None:
    class Clash(msgspec.Struct, frozen=True):
        config_section: ClassVar[str] = "worker"
        port: int = 1

    with pytest.raises(TypeError, match="CORRAL_PORT would set both Api.port and Clash.port"):
        load_settings((Api, Clash), {})


def test_config_lists_each_setting_with_its_variable_value_default_and_source() -> None:
    table = text_table(load_settings(API, {"CORRAL_PORT": "9000"}))
    lines = [line.split() for line in table.splitlines()]
    assert lines[0] == ["section", "name", "variable", "value", "default", "source"]
    assert ["api", "port", "CORRAL_PORT", "9000", "8000", "env"] in lines
    assert ["redis", "binary", "CORRAL_REDIS_BINARY", "unset", "unset", "default"] in lines


def test_the_readme_table_comes_from_the_struct_and_its_comments() -> None:
    assert field_comments(Api) == {"host": "Where to listen.", "port": "Where to listen.", "ratio": "A share."}
    block = markdown_block(Api)
    assert "| `CORRAL_PORT` | `port` | `8000` | integer 1 … 65535 | Where to listen. |" in block
    readme = f"# Title\n\nprose\n{block}more prose\n"
    assert documented_block(readme, Api) == block
    assert documented_block(readme, Redis) is None
    assert "| `CORRAL_REDIS_MODE` | `mode` | `\"auto\"` | `auto`, `v2` |" in markdown_block(Redis)



class Window(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # The lower end.
    low: Annotated[int, msgspec.Meta(ge=1)]
    # The upper end.
    high: Annotated[int, msgspec.Meta(ge=1)]


class Box(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    config_section: ClassVar[str] = "sandbox"
    env_prefix: ClassVar[str] = "CORRAL_BOX_"

    name: str = "box"
    # A window.
    window: Window = Window(low=1, high=5)


class Shared(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    config_section: ClassVar[str] = "limits"
    env_prefix: ClassVar[str] = "CORRAL_LIMIT_"

    max: Window = Window(low=2, high=30)


class Front(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    config_section: ClassVar[str] = "api"

    port: int = 8000
    limits: Shared = Shared()


class Back(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    config_section: ClassVar[str] = "worker"

    grace: int = 40
    limits: Shared = Shared()

    def __post_init__(self) -> None:
        if self.grace < self.limits.max.high:
            raise ValueError("grace must be at least limits.max.high")


def test_a_nested_struct_is_a_sub_table_and_its_variables_join_its_path(tmp_path: Path) -> None:
    environ = write(tmp_path, "[sandbox.window]\nlow = 2\n") | {"CORRAL_BOX_WINDOW_HIGH": "9"}
    settings = load_settings((Box,), environ)
    assert settings.get(Box) == Box(window=Window(low=2, high=9))
    rows = {row.name: (row.variable, row.value, row.default, row.source) for row in settings}
    assert rows == {
        "name": ("CORRAL_BOX_NAME", "box", "box", "default"),
        "window.low": ("CORRAL_BOX_WINDOW_LOW", 2, 1, "file"),
        "window.high": ("CORRAL_BOX_WINDOW_HIGH", 9, 5, "env"),
    }


def test_unknown_keys_of_a_nested_table_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[sandbox.window\] 'wide' is not a setting"):
        load_settings((Box,), write(tmp_path, "[sandbox.window]\nlow = 2\nwide = 3\n"))
    with pytest.raises(ConfigError, match=r"\[sandbox\] 'window' must be the table \[sandbox.window\]"):
        load_settings((Box,), write(tmp_path, "[sandbox]\nwindow = 3\n"))


def test_every_bad_nested_value_is_reported_at_once_with_its_variable(tmp_path: Path) -> None:
    environ = write(tmp_path, '[sandbox.window]\nhigh = "big"\n') | {"CORRAL_BOX_WINDOW_LOW": "0"}
    with pytest.raises(ConfigError) as raised:
        load_settings((Box,), environ)
    message = str(raised.value)
    assert "CORRAL_BOX_WINDOW_LOW: Expected `int` >= 1" in message
    assert f"CORRAL_BOX_WINDOW_HIGH ([sandbox.window] high in {tmp_path / 'corral.toml'})" in message


def test_a_section_two_deployables_hold_is_read_once_from_its_own_table(tmp_path: Path) -> None:
    environ = write(tmp_path, "[limits.max]\nhigh = 35\n[worker]\ngrace = 50\n")
    front = load_settings((Front, Shared), environ)
    back = load_settings((Back, Shared), environ | {"CORRAL_LIMIT_MAX_LOW": "3"})
    assert front.get(Front).limits == front.get(Shared) == Shared(max=Window(low=2, high=35))
    assert back.get(Back) == Back(grace=50, limits=Shared(max=Window(low=3, high=35)))
    # Its rows are its own section's, once, not the holder's.
    assert [(row.section, row.name) for row in front] == [("api", "port"), ("limits", "max.low"), ("limits", "max.high")]


def test_a_held_section_is_refused_inside_its_holders_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[api\] 'limits' is not a setting: it is the section \[limits\]"):
        load_settings((Front, Shared), write(tmp_path, "[api.limits.max]\nhigh = 35\n"))


def test_a_rule_on_a_held_section_names_the_variables_of_both() -> None:
    with pytest.raises(ConfigError, match=r"\[worker\] grace must be .* \(CORRAL_GRACE, CORRAL_LIMIT_MAX_HIGH\)"):
        load_settings((Back, Shared), {"CORRAL_LIMIT_MAX_HIGH": "45"})


def test_a_held_section_that_is_not_loaded_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="Front.limits is the section Shared, which is not loaded"):
        load_settings((Front,), {})


def test_the_readme_table_of_a_nested_struct_names_its_path_and_both_comments() -> None:
    block = markdown_block(Box)
    assert "| `CORRAL_BOX_WINDOW_LOW` | `window.low` | `1` | integer ≥ 1 | A window. The lower end. |" in block
    assert "| `CORRAL_BOX_WINDOW_HIGH` | `window.high` | `5` | integer ≥ 1 | A window. The upper end. |" in block
    assert "limits" not in markdown_block(Front)
