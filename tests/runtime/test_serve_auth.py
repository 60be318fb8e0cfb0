"""The bearer-credential parser of the device server's token check (external input: the authorization metadata)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firstspike.runtime.serve.auth import parse_bearer

# RFC 6750 token68 characters; the server's own tokens may be any printable text without spaces
TOKENS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)
OWS = st.text(st.sampled_from(" \t"), max_size=3)


@st.composite
def any_case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(word, flips, strict=True))


@given(any_case("bearer"), TOKENS, st.integers(1, 3), OWS, OWS)
def test_a_bearer_credential_in_any_case_gives_its_token(scheme: str, token: str, spaces: int, lead: str,
                                                          trail: str) -> None:
    assert parse_bearer(f"{lead}{scheme}{' ' * spaces}{token}{trail}") == token


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12), TOKENS)
def test_other_schemes_give_nothing(scheme: str, token: str) -> None:
    want = token if scheme.lower() == "bearer" else None
    assert parse_bearer(f"{scheme} {token}") == want


@given(st.text(max_size=80))
def test_any_value_parses_without_error_and_a_token_is_part_of_it(value: str) -> None:
    token = parse_bearer(value)
    assert token is None or (token and token in value and value.strip(" \t").lower().startswith("bearer "))


def test_edge_cases() -> None:
    assert parse_bearer("") is None
    assert parse_bearer("Bearer") is None
    assert parse_bearer("Bearer    ") is None
    assert parse_bearer("BearerTOKEN") is None  # the scheme and the token need a space between them
    assert parse_bearer("Bearer\tTOKEN") is None  # ... a space, not a tab (RFC 7235: 1*SP)
    assert parse_bearer("Bearer a b") == "a b"  # the rest is the token, as sent (the comparison decides)
