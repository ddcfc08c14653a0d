"""An in-process emulator of Google Cloud Secret Manager, for tests, laid out the way moto lays out a service.

- `models`: the in-memory state and the service's semantics, behind one lock, with the test knobs;
- `filters`: the ``filter`` grammar of the list calls (the subset of AIP-160 the service accepts);
- `grpc_frontend` and `rest_frontend`: the two wire protocols, both serving the one model;
- `server`: `SecretManagerEmulator`, which runs both front ends on 127.0.0.1, and the command line.

It serves the real wire protocols, so an unmodified ``SecretManagerServiceClient`` talks to it over gRPC or
over REST. It does not import ``multicloud_store``: it emulates the cloud service, not the library. The public
entry point is `multicloud_store_gcp.testing`.
"""

from __future__ import annotations

import google_crc32c

from multicloud_store_gcp.emulator.models import MAX_PAYLOAD_BYTES, METHODS, SERVICE_NAME
from multicloud_store_gcp.emulator.server import SecretManagerEmulator, main

__all__ = ["MAX_PAYLOAD_BYTES", "METHODS", "SERVICE_NAME", "SecretManagerEmulator", "crc32c", "main"]


def crc32c(data: bytes) -> int:
    """Return the CRC32C (Castagnoli) checksum of ``data``, as Secret Manager's ``data_crc32c`` holds it.

    Args:
        data: The bytes to checksum.

    Returns:
        The checksum as an unsigned 32-bit integer.
    """
    return int(google_crc32c.value(data))
