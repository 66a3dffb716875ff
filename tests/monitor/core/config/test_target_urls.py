"""A target's URLs: credentials in base_url are refused (never dropped in silence, never echoed); proxy_url must
be an http:// proxy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from monitor.core.config import load_config

CHECKS = "checks:\n  - {name: a, kind: http, target: t}\n"


def test_base_url_with_credentials_is_refused_without_echoing_them(
    write_config: Callable[[str], Path], config_problems: Callable[..., list[str]]
) -> None:
    """user:password@ in base_url is one config problem naming the field and the fix (a secret Authorization
    header), and the password appears nowhere in it: before, the credentials were silently dropped and every
    auth_contract check passed on the gateway's 401."""
    path = write_config('targets:\n  t: {base_url: "https://ops:gw-S3cret@api.example.com"}\n' + CHECKS)
    (line,) = config_problems(path)
    assert "targets.t.base_url" in line, line
    assert "user:password@" in line, line
    assert "Authorization" in line, line
    assert "gw-S3cret" not in line, line


def test_proxy_url_must_be_an_http_proxy(
    write_config: Callable[[str], Path], config_problems: Callable[..., list[str]]
) -> None:
    """A socks:// or https:// proxy_url is refused with what is supported; an http:// one with credentials loads."""
    bad = write_config('targets:\n  t: {base_url: "http://127.0.0.1:8000", proxy_url: "socks5://p:1080"}\n'
                       + CHECKS)
    (line,) = config_problems(bad)
    assert "targets.t.proxy_url" in line, line
    assert "http:// proxy URL" in line, line
    good = write_config('targets:\n  t: {base_url: "http://127.0.0.1:8000", '
                        'proxy_url: "http://u:p4ss@127.0.0.1:3128"}\n' + CHECKS)
    assert "http://u:p4ss@127.0.0.1:3128" == load_config(good, environ={}).targets["t"].proxy_url
