"""An in-process emulator of Google Cloud Secret Manager, for tests.

It serves the real wire protocols, so an unmodified ``SecretManagerServiceClient`` talks to it over gRPC or
over REST, the way moto serves AWS::

    from multicloud_store_gcp.testing import SecretManagerEmulator

    with SecretManagerEmulator() as emulator, emulator.client("rest") as client:  # or "grpc"
        client.create_secret(
            parent="projects/p", secret_id="s", secret={"replication": {"automatic": {}}}
        )
        emulator.inject_fault("UNAVAILABLE", methods={"AccessSecretVersion"})

To build a client yourself: over gRPC pass
``transport=SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(emulator.grpc_endpoint))``; over
REST pass ``transport="rest"``, ``credentials=AnonymousCredentials()`` and
``client_options={"api_endpoint": emulator.rest_endpoint}`` (an ``http://`` URL, which the transport keeps).

One in-memory backend, guarded by one lock, sits behind both front ends, so a secret written over gRPC is
readable over REST. Tests can inject faults, lose answers to calls that took effect, serve a stale
``latest`` alias, add latency, corrupt checksums and count round trips.

Run it beside an application with
``python -m multicloud_store_gcp.testing --grpc-port 8085 --rest-port 8086``.

The emulator itself lives in `multicloud_store_gcp.emulator` (model, filter grammar and the two front ends in
modules of their own); this module is its stable public name. It does not import ``multicloud_store``: it
emulates the cloud service, not the library.
"""

from __future__ import annotations

import sys

from multicloud_store_gcp.emulator import (
    MAX_PAYLOAD_BYTES,
    METHODS,
    SERVICE_NAME,
    SecretManagerEmulator,
    crc32c,
    main,
)

__all__ = ["MAX_PAYLOAD_BYTES", "METHODS", "SERVICE_NAME", "SecretManagerEmulator", "crc32c", "main"]

if __name__ == "__main__":
    sys.exit(main())
