"""
Letting the inline shim run under a page's Content-Security-Policy.

A policy that already allows inline scripts is left alone.  One that uses a nonce
lends it to the shim: the policy is unchanged.  Any other blocking policy gets
the shim's own hash in a C{script-src-elem} directive, which governs script
elements only, so the page's inline event handlers, styles and other scripts
keep exactly the permissions they had.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NONCE = re.compile(rb"'nonce-([A-Za-z0-9+/_=-]+)'", re.IGNORECASE)
_FALLBACK_ORDER = (b"script-src-elem", b"script-src", b"default-src")
# With any of these present a browser ignores 'unsafe-inline'.
_DISABLES_UNSAFE_INLINE = (b"'nonce-", b"'sha256-", b"'sha384-", b"'sha512-", b"'strict-dynamic'")


class _Policy:
    def __init__(self, text: bytes) -> None:
        self.directives: list[tuple[bytes, list[bytes]]] = []
        for part in text.split(b";"):
            tokens = part.split()
            if tokens:
                self.directives.append((tokens[0].lower(), tokens[1:]))

    def sources(self, name: bytes) -> list[bytes] | None:
        # The first occurrence of a directive wins; later duplicates are ignored.
        for directive, tokens in self.directives:
            if directive == name:
                return tokens
        return None

    def script_element_sources(self) -> list[bytes] | None:
        for name in _FALLBACK_ORDER:
            tokens = self.sources(name)
            if tokens is not None:
                return tokens
        return None

    def serialize(self) -> bytes:
        return b"; ".join(b" ".join([name, *tokens]) for name, tokens in self.directives)


def _blocks_inline(tokens: list[bytes] | None) -> bool:
    if tokens is None:
        return False
    lowered = [t.lower() for t in tokens]
    if any(t.startswith(_DISABLES_UNSAFE_INLINE) for t in lowered):
        return True
    return b"'unsafe-inline'" not in lowered


def admit_inline_script(
    header_values: Sequence[bytes],
    hash_source: bytes,
    nonce: bytes | None = None,
    *,
    pick_nonce: bool = True,
) -> tuple[Sequence[bytes], bytes | None]:
    """
    Adjust CSP header values so that one inline script runs.

    @param header_values: the values of C{Content-Security-Policy} (or its
        C{-Report-Only} twin); each may hold several comma-separated policies.
    @param hash_source: the script's C{'sha256-...'} source expression.
    @param nonce: a nonce the script element already carries.
    @param pick_nonce: whether a nonce found in these policies may be borrowed
        (not for report-only policies, whose nonce need not be the enforced one).
    @return: the header values to send, and the nonce the script element must
        carry (or C{None}).
    """
    policies = [
        _Policy(text) for value in header_values for text in value.split(b",") if text.strip()
    ]
    blocking = [
        (policy, tokens)
        for policy in policies
        if (tokens := policy.script_element_sources()) is not None and _blocks_inline(tokens)
    ]
    if nonce is None and pick_nonce:
        for _, tokens in blocking:
            found = _nonces(tokens)
            if found:
                nonce = found[0]
                break
    changed = False
    for policy, tokens in blocking:
        if nonce is not None and nonce in _nonces(tokens):
            continue
        changed = True
        # 'none' beside another source is ignored, with a console warning: drop it.
        kept = [t for t in tokens if t.lower() != b"'none'"] + [hash_source]
        own = policy.sources(b"script-src-elem")
        if own is not None:
            own[:] = kept
        else:
            policy.directives.append((b"script-src-elem", kept))
    if not changed:
        return header_values, nonce
    return [b", ".join(policy.serialize() for policy in policies)], nonce


def _nonces(tokens: list[bytes]) -> list[bytes]:
    return [m.group(1) for m in map(_NONCE.fullmatch, tokens) if m is not None]
