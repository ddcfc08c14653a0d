"""The shared keyring: parsing, sealing with the newest key, opening by key id, errors without key material."""

from __future__ import annotations

import base64

import pytest

from multicloud_store.sealing import (
    IntegrityError,
    KeyEntry,
    KeyFormatError,
    Keyring,
    Sealed,
    UnknownKeyError,
    fingerprint,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
B64_A = base64.b64encode(KEY_A).decode()
B64_B = base64.b64encode(KEY_B).decode()


def test_bare_key_gets_a_stable_fingerprint_id() -> None:
    ring = Keyring.parse(B64_A + "\n")
    assert ring.ids == (fingerprint(KEY_A),)
    assert Keyring.parse(B64_A).newest_id == ring.newest_id
    assert fingerprint(KEY_A) != fingerprint(KEY_B)


def test_newest_first_and_seal_uses_newest() -> None:
    ring = Keyring.parse(f"new:{B64_B}, old:{B64_A}")
    assert ring.ids == ("new", "old")
    sealed = ring.seal(b"payload", b"aad")
    assert sealed.key_id == "new"
    assert ring.open(sealed, b"aad") == b"payload"


def test_old_rows_open_with_their_key_after_rotation() -> None:
    old = Keyring.parse(f"old:{B64_A}")
    sealed = old.seal(b"v", b"n")
    rotated = old.with_new_key("next")
    assert rotated.newest_id == "next"
    assert rotated.open(sealed, b"n") == b"v"
    assert rotated.seal(b"v", b"n").key_id == "next"
    with pytest.raises(UnknownKeyError):
        rotated.without(["old"]).open(sealed, b"n")


def test_aad_and_tampering_detected() -> None:
    ring = Keyring.generate("k1")
    sealed = ring.seal(b"value", b"name-a")
    with pytest.raises(IntegrityError):
        ring.open(sealed, b"name-b")
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(IntegrityError):
        ring.open(Sealed(sealed.key_id, sealed.nonce, flipped), b"name-a")


def test_nonces_are_fresh() -> None:
    ring = Keyring.generate()
    assert len({ring.seal(b"x", b"").nonce for _ in range(200)}) == 200


def test_dumps_round_trips_and_comments_are_ignored() -> None:
    ring = Keyring.generate("a").with_new_key("b")
    again = Keyring.parse("# rotated today\n" + ring.dumps())
    assert again.ids == ("b", "a")
    assert again.open(ring.seal(b"x", b"y"), b"y") == b"x"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not base64!",
        base64.b64encode(b"short").decode(),
        f"a:{B64_A},a:{B64_B}",
        f"a:{B64_A},b:{B64_A}",
        f"bad id:{B64_A}",
    ],
)
def test_bad_text_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(KeyFormatError) as info:
        Keyring.parse(text)
    assert B64_A not in str(info.value) and B64_B not in str(info.value)


def test_repr_shows_no_key() -> None:
    entry = KeyEntry("k", KEY_A)
    ring = Keyring([entry])
    assert B64_A not in repr(ring) + repr(entry) and str(KEY_A) not in repr(entry)
