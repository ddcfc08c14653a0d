"""The gRPC front end: one generic handler that serves every RPC of the service from the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from multicloud_store_gcp.emulator.exceptions import RpcError
from multicloud_store_gcp.emulator.models import LOGGER, RPC_TYPES, SERVICE_NAME, Backend

__all__ = ["grpc_service"]


def _grpc_behavior(backend: Backend, method: str) -> Callable[[Any, grpc.ServicerContext], Any]:
    def behavior(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return backend.invoke(method, request)
        except RpcError as exc:
            context.abort(grpc.StatusCode[exc.code], exc.message)
            raise AssertionError("unreachable: context.abort raises") from exc  # pragma: no cover
        except Exception as exc:  # the emulator's own bug: answer like the service would, and log it
            LOGGER.exception("Secret Manager emulator: unexpected error serving %s", method)
            context.abort(grpc.StatusCode.INTERNAL, "Internal error in the Secret Manager emulator.")
            raise AssertionError("unreachable: context.abort raises") from exc  # pragma: no cover

    return behavior


def grpc_service(backend: Backend) -> Any:
    """A generic gRPC handler serving every method of the service from ``backend``."""
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            _grpc_behavior(backend, method),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
        for method, (request_type, response_type) in RPC_TYPES.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
