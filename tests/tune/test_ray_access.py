"""``check_ray_access`` without a cluster: what it refuses from the address and the token variables alone.

What a real token-auth cluster answers is in ``test_ray_token_auth.py`` (slow).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autolfads.tune.ray_access import RayAccessError, check_ray_access, token_setting
from tests.services import free_port


@pytest.fixture(autouse=True)
def _no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of the developer
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)


def test_a_ray_client_address_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(RayAccessError) as refused:
        check_ray_access("ray://head:10001")
    message = str(refused.value)
    assert message.startswith("--address ray://head:10001: Ray Client (ray://) is not supported")
    assert "ray job submit --address http://HEAD:8265 -- autolfads run" in message
    assert "\n" not in message


def test_token_mode_without_any_token_is_refused_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(
        RayAccessError, match="RAY_AUTH_MODE=token but no Ray token is set: set RAY_AUTH_TOKEN"
    ):
        check_ray_access("127.0.0.1:1")


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "cannot read the Ray token file"), ("\n", "is empty")]
)
def test_a_token_file_ray_could_not_read_is_one_line(
    content: str | None, problem: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    with pytest.raises(RayAccessError, match=f"RAY_AUTH_TOKEN_PATH={path}: .*{problem}"):
        token_setting()


@pytest.mark.parametrize(
    ("env", "source", "sends"),
    [
        ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t"}, "RAY_AUTH_TOKEN", True),
        ({"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "t"}, "RAY_AUTH_TOKEN", False),
        ({"RAY_AUTH_TOKEN": "t"}, "RAY_AUTH_TOKEN", False),  # Ray sends it only in token mode
        ({"RAY_AUTH_MODE": "token"}, None, False),
    ],
)
def test_the_token_setting_follows_rays_rules(
    env: dict[str, str], source: str | None, sends: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    setting = token_setting()
    assert (setting.source, setting.sends_token) == (source, sends)


def test_an_unreachable_cluster_is_left_to_ray_inits_own_retries() -> None:
    check_ray_access(f"127.0.0.1:{free_port()}")  # nothing listens: no verdict on the token
    check_ray_access("auto")
