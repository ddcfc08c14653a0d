"""Drive ZenML 0.98 through its own `Client`, one JSON command per line: a helper process of the tests here.

ZenML keeps process-global singletons (GlobalConfiguration, Client, the zen store and its secrets store), so every
scenario runs this script in a fresh process whose environment alone says which ZenML store and which secrets
store to use (a local SQLite store, or a ZenML server through ``ZENML_STORE_URL=http://...``). The same code runs
for every backend.

Protocol: a command ``{"op": "create", "name": ..., "values": {...}}`` on standard input; one answer
``{"ok": true, "result": ..., "seconds": ...}`` or ``{"ok": false, "error": "KeyError", "kinds": [...],
"message": ..., "seconds": ...}`` on the original standard output. Everything ZenML prints goes to standard error.
Nothing here prints a secret value; values travel only inside answers, to the test that asked for them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

# Keep the answer channel clean: ZenML (and anything it loads) writes to fd 1 through Python and C alike.
_ANSWERS = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr

OPS: dict[str, Callable[..., Any]] = {}


def op(func: Callable[..., Any]) -> Callable[..., Any]:
    OPS[func.__name__.removeprefix("op_")] = func
    return func


def _client() -> Any:
    from zenml.client import Client

    return Client()


def _class_name(store: Any, attribute: str) -> str | None:
    # RestZenStore has no secrets store attributes; SqlZenStore raises when none is configured.
    try:
        value = getattr(store, attribute)
    except Exception:
        return None
    return None if value is None else f"{type(value).__module__}.{type(value).__name__}"


@op
def op_info() -> dict[str, Any]:
    store = _client().zen_store
    info = store.get_store_info()
    return {
        "server_id": str(info.id),
        "zen_store": type(store).__name__,
        "secrets_store_type": str(info.secrets_store_type.value),
        "secrets_store": _class_name(store, "secrets_store"),
        "backup_secrets_store": _class_name(store, "backup_secrets_store"),
    }


@op
def op_create(name: str, values: dict[str, str]) -> dict[str, Any]:
    secret = _client().create_secret(name=name, values=values)
    return {"id": str(secret.id), "values": secret.secret_values}


@op
def op_get(name: str) -> dict[str, Any]:
    secret = _client().get_secret(name, allow_partial_name_match=False, allow_partial_id_match=False)
    return {"id": str(secret.id), "name": secret.name, "values": secret.secret_values}


@op
def op_update(
    name: str, add: dict[str, str] | None = None, remove: list[str] | None = None
) -> dict[str, Any]:
    secret = _client().update_secret(name, add_or_update_values=add, remove_values=remove)
    return {"id": str(secret.id), "values": secret.secret_values}


@op
def op_list() -> dict[str, Any]:
    page = _client().list_secrets(size=1000)
    return {"names": sorted(s.name for s in page.items), "ids": sorted(str(s.id) for s in page.items)}


@op
def op_delete(name: str) -> None:
    _client().delete_secret(name)


# The zen store's own methods: what the REST API and the dashboard call, without the Client's read-first steps.


@op
def op_store_get(id: str) -> dict[str, Any]:
    secret = _client().zen_store.get_secret(UUID(id))
    return {"id": str(secret.id), "values": secret.secret_values}


@op
def op_store_update(id: str, values: dict[str, str | None]) -> dict[str, Any]:
    from pydantic import SecretStr
    from zenml.models import SecretUpdate

    update = SecretUpdate(values={k: None if v is None else SecretStr(v) for k, v in values.items()})
    secret = _client().zen_store.update_secret(UUID(id), update)
    return {"id": str(secret.id), "values": secret.secret_values}


@op
def op_store_delete(id: str) -> None:
    _client().zen_store.delete_secret(UUID(id))


@op
def op_backup_secrets() -> None:
    # What `zenml secret backup` runs: copy every secret's values from the primary to the backup store.
    _client().backup_secrets(ignore_errors=False)


@op
def op_connector_create(name: str, username: str, password: str, registry: str) -> dict[str, Any]:
    connector, _ = _client().create_service_connector(
        name=name,
        connector_type="docker",
        auth_method="password",
        configuration={"username": username, "password": password, "registry": registry},
        # verify=False: nothing listens at the registry; the point is where the credentials are kept.
        verify=False,
        list_resources=False,
    )
    assert connector is not None
    return {"id": str(connector.id)}


@op
def op_connector_get(name: str) -> dict[str, Any]:
    connector = _client().get_service_connector(name, allow_name_prefix_match=False, expand_secrets=True)
    return {"id": str(connector.id), "configuration": connector.configuration.plain}


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "error": type(exc).__name__,
        "kinds": [cls.__name__ for cls in type(exc).__mro__],
        # ZenML's and multicloud-store's messages name ids and variables, never values.
        "message": str(exc)[:4000],
    }


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        name = command.pop("op")
        if name == "exit":
            _ANSWERS.write(json.dumps({"ok": True, "result": None, "seconds": 0.0}) + "\n")
            return 0
        started = time.perf_counter()
        try:
            result = OPS[name](**command)
        except Exception as exc:
            answer = {"ok": False, **_error(exc)}
        else:
            answer = {"ok": True, "result": result}
        answer["seconds"] = round(time.perf_counter() - started, 3)
        _ANSWERS.write(json.dumps(answer, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
