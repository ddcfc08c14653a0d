"""An azure-core transport that hands each request to the model, without sockets."""

from __future__ import annotations

import http
import io
from collections.abc import Iterator
from typing import Any

from azure.core.exceptions import ServiceResponseError
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict

from multicloud_store_azure.emulator.model import VaultModel, _Response

__all__ = ["InProcessTransport"]


class _InProcessResponse(HttpResponseImpl):
    """A fully read azure-core response built from the emulator's answer."""

    def __init__(self, request: HttpRequest, response: _Response) -> None:
        body = response.body

        def _stream(*_args: Any, **_kwargs: Any) -> Iterator[bytes]:
            yield body

        headers = case_insensitive_dict(response.headers)
        headers["Content-Length"] = str(len(body))
        super().__init__(
            request=request,
            internal_response=io.BytesIO(body),
            status_code=response.status,
            reason=http.HTTPStatus(response.status).phrase,
            content_type=headers.get("Content-Type"),
            headers=headers,
            stream_download_generator=_stream,
        )
        # Already "read": the pipeline's deserialization finds the bytes without touching a stream.
        self._content = body


class InProcessTransport(HttpTransport[HttpRequest, HttpResponse]):
    """An azure-core transport that hands each request to the emulator without sockets."""

    def __init__(self, emulator: VaultModel) -> None:
        self._emulator = emulator

    def __enter__(self) -> InProcessTransport:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def open(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        """Serve ``request`` from the emulator's vault.

        Args:
            request: The azure-core REST request.
            **kwargs: Transport options (timeouts, proxies, ...); ignored.

        Returns:
            The emulator's response, already read.
        """
        content: Any = request.content
        if content is None:
            body = b""
        elif isinstance(content, bytes):
            body = content
        elif isinstance(content, str):
            body = content.encode("utf-8")
        elif hasattr(content, "read"):
            data = content.read()
            body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        else:
            body = b"".join(c.encode("utf-8") if isinstance(c, str) else bytes(c) for c in content)
        answer = self._emulator._handle(request.method, request.url, dict(request.headers.items()), body)
        if answer.lost:
            raise ServiceResponseError("Connection aborted: the emulator lost the answer (lose_answers)")
        return _InProcessResponse(request, answer)
