"""The [redis] settings that log in and check the server: what they accept and pass on."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral_redis import RedisCredentialsError, RedisSettings, security_options


def test_tls_files_need_a_rediss_url() -> None:
    with pytest.raises(ValueError, match="tls_ca_file need a rediss:// url"):
        RedisSettings(url="redis://10.0.0.5:6379/0", tls_ca_file="/etc/corral/ca.crt")


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="both or neither"):
        RedisSettings(url="rediss://10.0.0.5:6380/0", tls_cert_file="/etc/corral/client.crt")


def test_the_password_comes_from_its_file_without_the_line_end(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret:with@odd/characters\n")
    settings = RedisSettings(
        url="rediss://10.0.0.5:6380/0",
        username="corral-worker",
        password_file=str(password),
        tls_ca_file="/etc/corral/ca.crt",
        tls_cert_file="/etc/corral/client.crt",
        tls_key_file="/etc/corral/client.key",
    )
    assert security_options(settings) == {
        "username": "corral-worker",
        "password": "s3cret:with@odd/characters",
        "ssl_ca_certs": "/etc/corral/ca.crt",
        "ssl_certfile": "/etc/corral/client.crt",
        "ssl_keyfile": "/etc/corral/client.key",
    }


def test_unset_settings_leave_the_urls_user_and_password_alone() -> None:
    assert security_options(RedisSettings(url="rediss://corral-api:pw@10.0.0.5:6380/0")) == {}


def test_an_unreadable_password_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(RedisCredentialsError, match=str(missing)):
        security_options(RedisSettings(password_file=str(missing)))
