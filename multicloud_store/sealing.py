"""Envelope sealing shared by the backends that encrypt for themselves (``local``, ``sql``): AES-256-GCM keyrings.

A keyring holds one or more 256-bit keys, newest first, each with a short id. Writes always seal with the newest
key; every sealed value records the id of the key that sealed it, so reads use the right key and a rotation can
re-encrypt row by row while other processes keep reading and writing (the idea of Vault's barrier keyring, where
every ciphertext carries the term of its key).

Text format (``MULTICLOUD_STORE_LOCAL_KEY``, ``MULTICLOUD_STORE_SQL_KEY``, and key files): entries separated by
commas or newlines, newest first; each entry is ``<id>:<base64 of 32 bytes>``, or a bare ``<base64>`` whose id is
derived from the key itself (a fingerprint), which is how a single key written before key ids existed keeps
working. Lines starting with ``#`` are comments.

Nothing here logs, and no error message ever contains key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "IntegrityError",
    "KeyEntry",
    "KeyFormatError",
    "Keyring",
    "Sealed",
    "SealingError",
    "UnknownKeyError",
    "key_check_opens",
    "row_aad",
    "seal_key_check",
]

KEY_BYTES = 32
NONCE_BYTES = 12
_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class SealingError(Exception):
    """Base of the errors of this module; messages never hold key material or plaintext."""


class KeyFormatError(SealingError, ValueError):
    """Key text that cannot be parsed (the message names the entry by position, never its content)."""


class UnknownKeyError(SealingError):
    """A value was sealed with a key id that the keyring does not hold."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"sealed with key id {key_id!r}, which is not among the configured keys")
        self.key_id = key_id


class IntegrityError(SealingError):
    """Decryption failed: the ciphertext, its associated data or the key do not match."""


def fingerprint(key: bytes) -> str:
    """Return the derived id of a key given without one: 8 hex digits of an HMAC of a fixed label.

    The HMAC keeps the fingerprint from revealing anything usable about the key.

    Args:
        key: The 32 raw key bytes.

    Returns:
        An id such as ``fp-1a2b3c4d``.
    """
    return "fp-" + hmac.new(key, b"multicloud-store key id v1", hashlib.sha256).hexdigest()[:8]


@dataclass(frozen=True)
class KeyEntry:
    """One key of a keyring.

    Attributes:
        key_id: Its id, recorded beside every value it seals.
        key: The 32 raw key bytes (never shown in a repr).
    """

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _ID_PATTERN.fullmatch(self.key_id):
            raise KeyFormatError("a key id must be 1 to 32 characters of letters, digits, '_', '.' or '-'")
        if len(self.key) != KEY_BYTES:
            raise KeyFormatError(f"a key must be {KEY_BYTES} bytes, got {len(self.key)}")

    def text(self) -> str:
        """Return this entry in the text format, ``<id>:<base64>``.

        Returns:
            The entry's text (it holds the key: write it only to a protected file).
        """
        return f"{self.key_id}:{base64.b64encode(self.key).decode()}"

    @classmethod
    def generate(cls, key_id: str | None = None) -> KeyEntry:
        """Make a new random key.

        Args:
            key_id: Its id; default: ``k`` followed by the UTC date and 4 random hex digits.

        Returns:
            The entry.
        """
        if key_id is None:
            import time

            key_id = "k" + time.strftime("%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(2)
        return cls(key_id, secrets.token_bytes(KEY_BYTES))


@dataclass(frozen=True)
class Sealed:
    """A sealed value.

    Attributes:
        key_id: The id of the key that sealed it.
        nonce: The 96-bit nonce, fresh for every seal.
        ciphertext: The ciphertext with its 16-byte GCM tag.
    """

    key_id: str
    nonce: bytes
    ciphertext: bytes = field(repr=False)


class Keyring:
    """One or more AES-256-GCM keys, newest first. Thread-safe (immutable after construction).

    Args:
        entries: The keys, newest first; ids must be distinct.

    Raises:
        KeyFormatError: No key, or two keys with one id.
    """

    def __init__(self, entries: Sequence[KeyEntry]) -> None:
        if not entries:
            raise KeyFormatError("no key given")
        ids = [entry.key_id for entry in entries]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise KeyFormatError(f"key id {duplicates[0]!r} is given more than once")
        keys = [entry.key for entry in entries]
        if len(set(keys)) != len(keys):
            raise KeyFormatError("the same key is given twice under different ids")
        self._entries = tuple(entries)
        self._by_id = {entry.key_id: entry for entry in entries}
        self._ciphers: dict[str, AESGCM] = {}

    def __repr__(self) -> str:
        return f"Keyring(ids={list(self.ids)!r})"

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Read a keyring from its text format.

        Args:
            text: Entries separated by commas or newlines, newest first.

        Returns:
            The keyring.

        Raises:
            KeyFormatError: An entry is malformed (named by its 1-based position, never by its content).
        """
        entries: list[KeyEntry] = []
        raw_entries = [
            part.strip()
            for line in text.splitlines()
            if not line.strip().startswith("#")
            for part in line.split(",")
        ]
        for position, raw in enumerate((r for r in raw_entries if r), start=1):
            key_id, sep, encoded = raw.rpartition(":")
            if not sep:
                encoded, key_id = raw, ""
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise KeyFormatError(
                    f"key #{position} is not base64 (make one with: openssl rand -base64 32)"
                ) from None
            if len(key) != KEY_BYTES:
                raise KeyFormatError(
                    f"key #{position} decodes to {len(key)} bytes; AES-256 needs {KEY_BYTES}"
                )
            try:
                entries.append(KeyEntry(key_id.strip() or fingerprint(key), key))
            except KeyFormatError as exc:
                raise KeyFormatError(f"key #{position}: {exc}") from None
        return cls(entries)

    @classmethod
    def generate(cls, key_id: str | None = None) -> Keyring:
        """Make a keyring of one new random key.

        Args:
            key_id: The key's id (see `KeyEntry.generate`).

        Returns:
            The keyring.
        """
        return cls([KeyEntry.generate(key_id)])

    def with_new_key(self, key_id: str | None = None) -> Keyring:
        """Return this keyring with a new random key in front (the next writes use it).

        Args:
            key_id: The new key's id.

        Returns:
            A new keyring; this one is unchanged.
        """
        return Keyring([KeyEntry.generate(key_id), *self._entries])

    def without(self, key_ids: Iterable[str]) -> Keyring:
        """Return this keyring without some keys (after a rotation has moved every value off them).

        Args:
            key_ids: Ids to drop.

        Returns:
            A new keyring.
        """
        drop = set(key_ids)
        return Keyring([e for e in self._entries if e.key_id not in drop])

    def dumps(self) -> str:
        """Return the text format, one entry per line, newest first, ending in a newline.

        Returns:
            The text (it holds the keys: write it only to a protected file).
        """
        return "".join(entry.text() + "\n" for entry in self._entries)

    @property
    def newest_id(self) -> str:
        """The id of the key every write uses."""
        return self._entries[0].key_id

    @property
    def ids(self) -> tuple[str, ...]:
        """Every key id, newest first."""
        return tuple(entry.key_id for entry in self._entries)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._by_id

    def _cipher(self, key_id: str) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            entry = self._by_id.get(key_id)
            if entry is None:
                raise UnknownKeyError(key_id)
            # Imported here: `import multicloud_store` must stay cheap for the backends that never seal.
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            cipher = self._ciphers[key_id] = AESGCM(entry.key)
        return cipher

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        """Encrypt with the newest key and a fresh random nonce.

        Args:
            plaintext: What to protect.
            aad: Associated data bound to the ciphertext (a name and labels): opening with other data fails.

        Returns:
            The sealed value.
        """
        key_id = self._entries[0].key_id
        nonce = secrets.token_bytes(NONCE_BYTES)
        return Sealed(key_id, nonce, self._cipher(key_id).encrypt(nonce, plaintext, aad))

    def open(self, sealed: Sealed, aad: bytes) -> bytes:
        """Decrypt a sealed value with the key it names.

        Args:
            sealed: The value.
            aad: The associated data it was sealed with.

        Returns:
            The plaintext.

        Raises:
            UnknownKeyError: Its key is not in this keyring.
            IntegrityError: The ciphertext, the associated data or the key do not match.
        """
        cipher = self._cipher(sealed.key_id)
        from cryptography.exceptions import InvalidTag

        try:
            return cipher.decrypt(sealed.nonce, sealed.ciphertext, aad)
        except (InvalidTag, ValueError):
            raise IntegrityError("the sealed value fails its integrity check") from None

    def open_parts(self, key_id: str, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Decrypt like `open`, from the stored columns (the hot read path: no `Sealed` object is built).

        Args:
            key_id: The id of the key that sealed it.
            nonce: Its nonce.
            ciphertext: Its ciphertext and tag.
            aad: The associated data it was sealed with.

        Returns:
            The plaintext.

        Raises:
            UnknownKeyError: Its key is not in this keyring.
            IntegrityError: The ciphertext, the associated data or the key do not match.
        """
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            cipher = self._cipher(key_id)
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except Exception as exc:
            # Imported only on failure, to keep the success path short.
            from cryptography.exceptions import InvalidTag

            if isinstance(exc, (InvalidTag, ValueError)):
                raise IntegrityError("the sealed value fails its integrity check") from None
            raise


# -- key checks (added for the local and sql backends) ----------------------------------------------------------

KEY_CHECK_PLAINTEXT = b"multicloud-store key check v1"


def _key_check_aad(key_id: str) -> bytes:
    return b"key-check\x00" + key_id.encode()


def seal_key_check(keyring: Keyring, key_id: str | None = None) -> bytes:
    """Return a key check for one key of a keyring: ``nonce + ciphertext`` of a fixed text, bound to the key id.

    A backend stores one check per key id beside its data, so a wrong key is told apart from a damaged row.

    Args:
        keyring: The keyring.
        key_id: Which key (default: the newest).

    Returns:
        The check's bytes.

    Raises:
        UnknownKeyError: The keyring does not hold ``key_id``.
    """
    key_id = keyring.newest_id if key_id is None else key_id
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + keyring._cipher(key_id).encrypt(nonce, KEY_CHECK_PLAINTEXT, _key_check_aad(key_id))


def key_check_opens(keyring: Keyring, key_id: str, check: bytes, *, legacy_aad: bytes | None = None) -> bool:
    """Tell whether a stored key check opens with the keyring's key of that id.

    Args:
        keyring: The keyring.
        key_id: The id the check was stored under.
        check: The stored bytes (from `seal_key_check`).
        legacy_aad: Associated data of a check written before key ids existed (instead of the id's).

    Returns:
        True when the key is the one that wrote the check.

    Raises:
        UnknownKeyError: The keyring does not hold ``key_id``.
    """
    aad = _key_check_aad(key_id) if legacy_aad is None else legacy_aad
    try:
        plaintext = keyring.open(Sealed(key_id, check[:NONCE_BYTES], check[NONCE_BYTES:]), aad)
    except IntegrityError:
        return False
    return hmac.compare_digest(plaintext, KEY_CHECK_PLAINTEXT)


def row_aad(name: str, labels_text: str) -> bytes:
    """Return a stored row's associated data: its name and labels text, NUL-separated (local and sql backends).

    Binding both means a sealed value copied onto another name, or relabelled, fails its integrity check.
    """
    return name.encode() + b"\x00" + labels_text.encode()
