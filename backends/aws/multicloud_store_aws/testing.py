"""Test helpers for the AWS backend: moto is the emulator; these make it behave like AWS where it does not.

`thread_safe_moto`: moto's Secrets Manager backend keeps secrets in a dict that its lookups iterate (``for secret
in dict.values(self)``). When several request threads use one backend at once (``mock_aws`` with a threaded
client, or ``ThreadedMotoServer``), a create during a lookup raises "dictionary changed size during iteration"
inside moto, which a client sees as a 500. Real AWS has no such problem, so tests that exercise concurrency need
moto's calls serialised::

    from multicloud_store_aws.testing import thread_safe_moto

    with thread_safe_moto(), mock_aws():
        ...  # 8 threads storing and reading at once

`asynchronous_deletion`: AWS finishes a ``ForceDeleteWithoutRecovery`` delete in the background, and a
``CreateSecret`` of the same name fails meanwhile with ``InvalidRequestException`` ("... already scheduled for
deletion"); moto frees the name at once. Inside ``with asynchronous_deletion(seconds):`` moto (in-process and a
``ThreadedMotoServer`` in the same process) keeps a force-deleted name blocked that long.

`LostAnswers`: a write that commits on the service while every answer to it is lost (a timeout or a reset
connection on the way back). Attached to a boto3 client, it lets each attempt of an armed operation reach the
service (moto in-process, a moto server, or AWS itself), then drops the answer and raises botocore's
``ReadTimeoutError``, so botocore's own retries lose their answers too and the driver reports
`BackendUnavailableError`. It is the ``lost_answers`` fixture the contract suite asks for::

    lost = LostAnswers()
    lost.attach(driver.client)
    lost.lose_answers("create")  # or "replace", "delete", or an AWS operation name
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["LostAnswers", "asynchronous_deletion", "thread_safe_moto"]

#: The message AWS gives for a CreateSecret of a name whose forced deletion has not finished.
SCHEDULED_MESSAGE = (
    "You can't create this secret because a secret with this name is already scheduled for deletion."
)

_LOCK = threading.RLock()


@contextmanager
def thread_safe_moto() -> Iterator[None]:
    """Serialise every public call of moto's Secrets Manager backend with one lock, for the block's duration.

    Yields:
        Nothing.
    """
    from moto.secretsmanager.models import SecretsManagerBackend

    originals: dict[str, Callable[..., Any]] = {}
    for name, member in list(vars(SecretsManagerBackend).items()):
        # Plain methods only: properties and static methods keep their descriptors.
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        originals[name] = member

        def locked(*args: Any, _target: Callable[..., Any] = member, **kwargs: Any) -> Any:
            with _LOCK:
                return _target(*args, **kwargs)

        setattr(SecretsManagerBackend, name, functools.wraps(member)(locked))
    try:
        yield
    finally:
        for name, member in originals.items():
            setattr(SecretsManagerBackend, name, member)


@contextmanager
def asynchronous_deletion(seconds: float = 0.0, *, refusals: int = 0) -> Iterator[None]:
    """Make moto finish every forced deletion late, as AWS may, for the block's duration.

    After a ``DeleteSecret`` with ``ForceDeleteWithoutRecovery``, the secret is gone for reads and listings (as
    on AWS), but a ``CreateSecret`` of the same name fails with ``InvalidRequestException`` and AWS's message
    until ``seconds`` have passed and ``refusals`` creates were refused (the count makes tests independent of
    the machine's speed). Works for ``mock_aws`` and for a ``ThreadedMotoServer`` in this process.

    Args:
        seconds: How long a force-deleted name stays blocked.
        refusals: How many creates of the name are refused at least.

    Yields:
        Nothing.
    """
    from moto.secretsmanager.exceptions import InvalidRequestException
    from moto.secretsmanager.models import SecretsManagerBackend

    blocked: dict[tuple[int, str], tuple[float, int]] = {}
    lock = threading.Lock()
    original_delete = SecretsManagerBackend.delete_secret
    original_create = SecretsManagerBackend.create_secret

    def delete_secret(self: Any, secret_id: str, *args: Any, **kwargs: Any) -> Any:
        result = original_delete(self, secret_id, *args, **kwargs)
        force = kwargs.get("force_delete_without_recovery", args[1] if len(args) > 1 else False)
        if force:
            with lock:
                blocked[(id(self), result[1])] = (time.monotonic() + seconds, refusals)
        return result

    def create_secret(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        key = (id(self), name)
        with lock:
            entry = blocked.get(key)
            if entry is not None:
                until, left = entry
                if time.monotonic() >= until and left <= 0:
                    del blocked[key]
                    entry = None
                else:
                    blocked[key] = (until, left - 1)
        if entry is not None:
            raise InvalidRequestException(SCHEDULED_MESSAGE)
        return original_create(self, name, *args, **kwargs)

    SecretsManagerBackend.delete_secret = functools.wraps(original_delete)(delete_secret)  # type: ignore[method-assign]
    SecretsManagerBackend.create_secret = functools.wraps(original_create)(create_secret)  # type: ignore[method-assign]
    try:
        yield
    finally:
        SecretsManagerBackend.delete_secret = original_delete  # type: ignore[method-assign]
        SecretsManagerBackend.create_secret = original_create  # type: ignore[method-assign]


class LostAnswers:
    """Let writes commit on the service, then lose every answer to them; a contract-suite ``LostAnswerInjector``.

    Attributes:
        lost: How many answers were dropped, per AWS operation (retries included).
    """

    #: The driver's operations and the AWS operations that carry them.
    OPERATIONS: dict[str, str] = {
        "create": "CreateSecret",
        "replace": "PutSecretValue",
        "delete": "DeleteSecret",
    }

    def __init__(self) -> None:
        from botocore.httpsession import URLLib3Session

        self._lock = threading.Lock()
        self._armed: set[str] = set()
        self._http = URLLib3Session()
        self.lost: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        """Hook into a boto3 ``secretsmanager`` client (its ``before-send`` event, which runs before moto's)."""
        client.meta.events.register("before-send.secrets-manager", self._before_send)

    def lose_answers(self, operation: str) -> None:
        """Until `clear`, lose the answers of ``operation`` (``create``, ``replace``, ``delete`` or an AWS name)."""
        with self._lock:
            self._armed.add(self.OPERATIONS.get(operation, operation))

    def clear(self) -> None:
        """Answer normally again."""
        with self._lock:
            self._armed.clear()

    def close(self) -> None:
        """Close the connections used to reach a server."""
        self._http.close()

    def _before_send(self, request: Any, event_name: str, **_: Any) -> None:
        from botocore.exceptions import ReadTimeoutError

        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            armed = operation in self._armed
        if not armed:
            return
        # Deliver the request: to moto's in-process stub when it is active, else over the wire.
        from moto.core.models import botocore_stubber

        response = botocore_stubber(event_name=event_name, request=request)
        if response is None:
            response = self._http.send(request)
        response.content  # noqa: B018  the service has answered (and committed); the answer is now dropped
        with self._lock:
            self.lost[operation] += 1
        raise ReadTimeoutError(endpoint_url=request.url, error="injected: the answer was lost")
