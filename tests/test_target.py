"""The configured target, and URLs mapped back from it."""

from __future__ import annotations

import pytest

from wsse._forwarding import rewrite_location
from wsse._target import Target


@pytest.mark.parametrize(
    "url,target,origin",
    [
        ("http://127.0.0.1:8080", Target("http", "127.0.0.1", 8080), b"http://127.0.0.1:8080"),
        ("http://localhost:8080/", Target("http", "localhost", 8080), b"http://localhost:8080"),
        ("http://app/base/", Target("http", "app", 80, b"/base"), b"http://app"),
        ("https://app:8443/a/b", Target("https", "app", 8443, b"/a/b"), b"https://app:8443"),
        ("http://[::1]:8080", Target("http", "::1", 8080), b"http://[::1]:8080"),
    ],
)
def test_target_urls(url: str, target: Target, origin: bytes) -> None:
    assert Target.from_url(url) == target
    assert target.origin == origin


@pytest.mark.parametrize(
    "url,complaint",
    [
        ("ftp://app", "http:// or https://"),
        ("127.0.0.1:8080", "http:// or https://"),
        ("http://", "no host"),
        ("http://user:pw@app", "user or password"),
        ("http://app/?x=1", "query"),
        ("http://app:99999", "invalid port"),
    ],
)
def test_bad_target_urls_say_why(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Target.from_url(url)


def test_a_target_s_cached_forms_leave_it_equal_to_a_fresh_one() -> None:
    target = Target("https", "app", 8443, b"/base")
    assert (target.authority, target.origin) == (b"app:8443", b"https://app:8443")
    assert target.url(b"/x?y") == b"https://app:8443/base/x?y"
    fresh = Target("https", "app", 8443, b"/base")
    assert target == fresh and hash(target) == hash(fresh)
    assert Target("https", "app", 443).url(b"/") == b"https://app/"


def test_the_upstream_url_keeps_the_path_as_sent() -> None:
    target = Target("http", "127.0.0.1", 8080, b"/base")
    assert (
        target.url(b"//evil.example/%2e%2e?x=@y")
        == b"http://127.0.0.1:8080/base//evil.example/%2e%2e?x=@y"
    )


@pytest.mark.parametrize(
    "location,mount,expected",
    [
        (b"http://127.0.0.1:8080/login?next=/", b"/", b"/login?next=/"),
        (b"HTTP://127.0.0.1:8080/x", b"/app/", b"/app/x"),
        (b"http://127.0.0.1:8080", b"/", b"http://127.0.0.1:8080"),
        (b"http://public.example/x", b"/", b"http://public.example/x"),
        (b"/relative", b"/", b"/relative"),
        (b"http://127.0.0.1:80800/x", b"/", b"http://127.0.0.1:80800/x"),
    ],
)
def test_locations_on_the_target_map_back_to_the_mount_point(location, mount, expected) -> None:
    assert rewrite_location(location, Target("http", "127.0.0.1", 8080), mount) == expected


def test_locations_under_a_base_path_map_back() -> None:
    target = Target("http", "app", 80, b"/base")
    assert rewrite_location(b"http://app/base/x", target, b"/") == b"/x"
    assert rewrite_location(b"http://app/other", target, b"/") == b"http://app/other"
