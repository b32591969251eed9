"""Path normalisation: the string the policy matches is the string the upstream routes."""

from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.paths import AmbiguousPath, Target, normalise


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("/", "/"),
        ("/inbox", "/inbox"),
        ("/inbox/", "/inbox/"),
        ("//billing", "/billing"),
        ("///billing//invoices", "/billing/invoices"),
        ("/%62illing", "/billing"),
        ("/%7euser/%41", "/~user/A"),
        ("/_static/../billing", "/billing"),
        ("/_static/%2e%2e/billing", "/billing"),
        ("/_static/.%2E/billing", "/billing"),
        ("/a/./b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/..", "/"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/my%20file", "/my%20file"),
        ("/a%3fb", "/a%3Fb"),
        ("/a|b^c", "/a%7Cb%5Ec"),
        ("/.well-known/openid-configuration", "/.well-known/openid-configuration"),
        ("/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="),
        (b"/inbox", "/inbox"),
    ],
)
def test_normalises(raw: str | bytes, path: str) -> None:
    assert normalise(raw).path == path


def test_query_is_kept_apart_and_untouched() -> None:
    assert normalise("/%62illing?next=%2F..%2Fa&x=1") == Target("/billing", "next=%2F..%2Fa&x=1")
    assert normalise("/inbox") == Target("/inbox", "")


@pytest.mark.parametrize(
    "raw",
    [
        "/%2e%2e/billing",  # climbs above the root
        "/..",
        "/a/../../billing",
        "/inbox/..%2fbilling",  # encoded slash
        "/inbox/..%2Fbilling",
        "/billing;x=1",  # path parameter
        "/billing/;/x",
        "/billing%3bx=1",
        "/inbox%5c..%5cbilling",  # backslash, encoded and raw
        "/inbox\\..\\billing",
        "/billing%00",  # NUL and other control characters
        "/billing\x00",
        "/bill%0aing",
        "/bill\ting",
        "/bill%7fing",
        "/bill ing",
        "/billing.",  # trailing dot or space: dropped by Windows servers
        "/billing%2e",
        "/billing../x",
        "/billing%20",
        "/billing%2520",  # double encoding
        "/%c0%ae%c0%ae/billing",  # overlong UTF-8 dot
        "/%e0%80%ae",
        "/%ff",
        "/%u002e%u002e/billing",  # IIS %u escapes
        "/%2",
        "/%zz",
        "/bill%",
        "/caf\u00e9",  # raw non-ASCII
        b"/caf\xc3\xa9",
        "/a#frag",
        "/a?b#frag",
        "/a?b c",
        "http://upstream/billing",  # absolute-form
        "*",
        "billing",
        "",
    ],
)
def test_refuses_ambiguous_targets(raw: str | bytes) -> None:
    with pytest.raises(AmbiguousPath) as caught:
        normalise(raw)
    assert caught.value.reason


# Tokens that make the interesting cases likely: dots, slashes, escapes, case.
TOKENS = st.sampled_from(
    ["/", "//", ".", "..", "%2e", "%2E", "%41", "%7e", "%7C", "%20", "%c3%a9", "a", "B", "_", "~"]
)
TOKEN_PATHS = st.lists(TOKENS, max_size=12).map(lambda t: "/" + "".join(t))
ANY_TARGETS = st.one_of(
    TOKEN_PATHS,
    st.text(max_size=40).map(lambda s: "/" + s),
    st.binary(max_size=40).map(lambda b: b"/" + b),
)


def attempt(raw: str | bytes) -> str | None:
    try:
        return normalise(raw).path
    except AmbiguousPath:
        return None


@given(ANY_TARGETS)
def test_output_is_canonical_and_stable(raw: str | bytes) -> None:
    path = attempt(raw)
    if path is None:
        return
    assert path.startswith("/")
    assert "//" not in path
    assert "/./" not in path and "/../" not in path
    assert not path.endswith(("/.", "/.."))
    assert all(e == e.upper() for e in re.findall("%..", path))
    assert normalise(path).path == path


@given(TOKEN_PATHS)
def test_means_what_a_decoding_server_means(raw: str) -> None:
    """Decoded, the result is the path a server resolving dot segments would serve."""
    path = attempt(raw)
    if path is None:
        return
    decoded = re.sub("/+", "/", unquote(raw))
    assert (unquote(path).rstrip("/") or "/") == posixpath.normpath(decoded)
