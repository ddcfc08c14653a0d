"""The payload envelope: what the dispatcher stores on every backend.

One JSON object that carries the values together with the deployment and the secret id they belong to, so that a
single read both returns the values and proves they are ours, whatever the backend's labels say::

    {"multicloud-store": 1, "deployment": "prod", "id": "<uuid>", "values": {"key": "value"}}

The version number lets a later release change the layout and still read what this one wrote.
"""

from __future__ import annotations

import json
from typing import NamedTuple
from uuid import UUID

__all__ = ["ENVELOPE_VERSION", "Envelope", "EnvelopeError", "decode", "encode", "values_if_ours"]

ENVELOPE_VERSION = 1
_MARK = "multicloud-store"
_raw_decode = json.JSONDecoder().raw_decode


class EnvelopeError(ValueError):
    """The payload is not an envelope this version can read. The message never contains the payload."""


class Envelope(NamedTuple):
    """A decoded payload (immutable; a tuple, which is built faster than a frozen dataclass on every read).

    Attributes:
        deployment: The deployment id that wrote it.
        secret_id: The secret id it was written for.
        values: The secret values (never in the repr).
    """

    deployment: str
    secret_id: str
    values: dict[str, str]

    def __repr__(self) -> str:
        return f"Envelope(deployment={self.deployment!r}, secret_id={self.secret_id!r})"


def encode(deployment: str, secret_id: UUID, values: dict[str, str]) -> str:
    """Serialise values into an envelope.

    Args:
        deployment: This store's deployment id.
        secret_id: The secret's id.
        values: Validated values.

    Returns:
        Compact JSON text (non-ASCII kept as UTF-8, which is what backends count against their limits).
    """
    document = {_MARK: ENVELOPE_VERSION, "deployment": deployment, "id": str(secret_id), "values": values}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def decode(payload: str) -> Envelope:
    """Parse and check an envelope.

    Args:
        payload: Text read from a backend.

    Returns:
        The envelope.

    Raises:
        EnvelopeError: Not JSON, not an envelope, an unknown version, or values that are not a string map.
    """
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        raise EnvelopeError("payload is not JSON") from None
    if not isinstance(document, dict) or _MARK not in document:
        raise EnvelopeError("payload is not a multicloud-store envelope")
    version = document[_MARK]
    if version != ENVELOPE_VERSION:
        # Only a number is echoed: anything else in that field is unknown text from the payload.
        shown = str(version) if isinstance(version, int) else f"of type {type(version).__name__}"
        raise EnvelopeError(
            f"envelope version {shown} is not supported (this release reads {ENVELOPE_VERSION})"
        )
    deployment, secret_id, values = document.get("deployment"), document.get("id"), document.get("values")
    if not isinstance(deployment, str) or not isinstance(secret_id, str) or not isinstance(values, dict):
        raise EnvelopeError("envelope fields are missing or of the wrong type")
    # A plain loop, not all(<generator>): this runs on every read, and the generator costs more than the checks.
    for key, value in values.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise EnvelopeError("envelope values are not a map of strings")
    return Envelope(deployment, secret_id, values)


def values_if_ours(payload: str, deployment: str, secret_id: str) -> dict[str, str] | None:
    """Return the values of an envelope that `decode` accepts and that names this deployment and id; else None.

    The read path's check in one step, without building an `Envelope`. It accepts exactly the payloads that
    `decode` returns with ``deployment`` and ``secret_id`` in them, and returns the same values; for anything else
    (not JSON, not an envelope, another version, another owner, values that are not strings) it returns None, and
    a caller that needs to tell those cases apart runs `decode`.

    Args:
        payload: Text read from a backend.
        deployment: This store's deployment id.
        secret_id: The id the payload must name, as `str(UUID)` writes it.

    Returns:
        The values, or None.
    """
    # json.loads is raw_decode plus a Python wrapper (BOM and whitespace checks, around 8,000 instructions, a tenth
    # of a local read). A payload this stores is compact JSON and parses whole; anything else (whitespace around
    # the document, bytes, not JSON) is left to json.loads, which accepts or refuses it as decode does.
    try:
        document, end = _raw_decode(payload)
        whole = end == len(payload)
    except (ValueError, TypeError, RecursionError):
        whole = False
    if not whole:
        try:
            document = json.loads(payload)
        except (ValueError, RecursionError):
            return None
    # JSON gives exact dicts and strs, so type() is as strict as decode's isinstance(); a field compared equal to
    # a str is a str; a missing field is None, which equals neither the version nor a str.
    if (
        type(document) is not dict
        or document.get(_MARK) != ENVELOPE_VERSION
        or document.get("deployment") != deployment
        or document.get("id") != secret_id
    ):
        return None
    values = document.get("values")
    if type(values) is not dict:
        return None
    # Keys need no check: a JSON object's keys are always strings.
    for value in values.values():
        if type(value) is not str:
            return None
    return values
