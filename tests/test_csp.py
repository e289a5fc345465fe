"""Letting the inline shim through Content-Security-Policy, and nothing else."""

from __future__ import annotations

import pytest

from wsse._csp import admit_inline_script

HASH = b"'sha256-SHIMHASH='"


@pytest.mark.parametrize(
    "policy",
    [
        b"default-src 'self'; style-src 'unsafe-inline'; script-src 'self' 'unsafe-inline'",
        b"img-src *; style-src 'self'",
        b"script-src-elem 'unsafe-inline'; script-src 'none'",
        b"frame-ancestors 'none'",
    ],
)
def test_policies_that_allow_inline_scripts_are_left_alone(policy: bytes) -> None:
    assert admit_inline_script([policy], HASH) == ([policy], None)


def test_a_nonce_is_borrowed_and_the_policy_unchanged() -> None:
    policy = b"script-src 'nonce-Ab+/9=' 'strict-dynamic'; object-src 'none'"
    assert admit_inline_script([policy], HASH) == ([policy], b"Ab+/9=")


def test_a_nonce_in_default_src_is_borrowed() -> None:
    policy = b"default-src 'self' 'nonce-xyz'"
    assert admit_inline_script([policy], HASH) == ([policy], b"xyz")


@pytest.mark.parametrize(
    "policy,expected",
    [
        (
            b"script-src 'self'",
            b"script-src 'self'; script-src-elem 'self' " + HASH,
        ),
        (
            b"default-src 'self'; style-src 'self' 'unsafe-inline'",
            b"default-src 'self'; style-src 'self' 'unsafe-inline'; script-src-elem 'self' " + HASH,
        ),
        (
            b"script-src 'self' 'sha256-pagehash=' 'unsafe-inline'",
            b"script-src 'self' 'sha256-pagehash=' 'unsafe-inline'; "
            b"script-src-elem 'self' 'sha256-pagehash=' 'unsafe-inline' " + HASH,
        ),
        (
            b"script-src-elem 'self'; script-src 'unsafe-inline'",
            b"script-src-elem 'self' " + HASH + b"; script-src 'unsafe-inline'",
        ),
        (
            b"default-src 'none'",
            b"default-src 'none'; script-src-elem " + HASH,
        ),
        (
            b"script-src 'strict-dynamic' 'unsafe-inline' https:",
            b"script-src 'strict-dynamic' 'unsafe-inline' https:; "
            b"script-src-elem 'strict-dynamic' 'unsafe-inline' https: " + HASH,
        ),
    ],
)
def test_other_blocking_policies_get_the_hash_for_script_elements_only(
    policy: bytes, expected: bytes
) -> None:
    assert admit_inline_script([policy], HASH) == ([expected], None)


def test_the_first_directive_of_a_name_is_the_one_that_counts() -> None:
    policy = b"script-src 'unsafe-inline'; script-src 'self'"
    assert admit_inline_script([policy], HASH) == ([policy], None)


def test_every_policy_must_allow_it_and_all_of_them_are_kept() -> None:
    headers = [b"script-src 'nonce-n1', img-src *", b"default-src 'self'"]
    values, nonce = admit_inline_script(headers, HASH)
    assert nonce == b"n1"
    assert values == [
        b"script-src 'nonce-n1', img-src *, default-src 'self'; script-src-elem 'self' " + HASH
    ]


def test_a_policy_with_another_nonce_gets_the_hash() -> None:
    values, nonce = admit_inline_script([b"script-src 'nonce-a'", b"script-src 'nonce-b'"], HASH)
    assert nonce == b"a"
    assert values == [
        b"script-src 'nonce-a', script-src 'nonce-b'; script-src-elem 'nonce-b' " + HASH
    ]


def test_a_given_nonce_is_used_and_none_is_picked_when_told_not_to() -> None:
    values, nonce = admit_inline_script([b"script-src 'nonce-x'"], HASH, None, pick_nonce=False)
    assert nonce is None
    assert values == [b"script-src 'nonce-x'; script-src-elem 'nonce-x' " + HASH]
    assert admit_inline_script([b"script-src 'nonce-x'"], HASH, b"x", pick_nonce=False) == (
        [b"script-src 'nonce-x'"],
        b"x",
    )


def test_a_nonce_that_could_break_out_of_the_attribute_is_not_borrowed() -> None:
    values, nonce = admit_inline_script([b"script-src 'nonce-a\"onload=x'"], HASH)
    assert nonce is None
    assert HASH in values[0]
