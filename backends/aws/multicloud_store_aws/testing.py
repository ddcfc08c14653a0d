"""Test helpers for the AWS backend: moto is the emulator; this makes it safe to hit from many threads.

moto's Secrets Manager backend keeps secrets in a dict that its lookups iterate (``for secret in
dict.values(self)``). When several request threads use one backend at once (``mock_aws`` with a threaded client,
or ``ThreadedMotoServer``), a create during a lookup raises "dictionary changed size during iteration" inside
moto, which a client sees as a 500. Real AWS has no such problem, so tests that exercise concurrency need moto's
calls serialised::

    from multicloud_store_aws.testing import thread_safe_moto

    with thread_safe_moto(), mock_aws():
        ...  # 8 threads storing and reading at once
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["thread_safe_moto"]

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
