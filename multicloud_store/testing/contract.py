"""The contract suite: the behaviour every backend shares, as pytest tests.

Subclass `StoreContract` in a test module and provide a ``make_store`` fixture that returns a factory
``make_store(deployment_id) -> SecretsStore``; every store it returns must use the same backend account (so two
deployment ids really share one namespace). Declare what the backend can simulate, or what it documents, in
``capabilities``:

- ``"faults"``: also provide a ``faults`` fixture returning a `FaultInjector`, so the suite can check that
  outages become `BackendUnavailableError` and denials become `BackendPermissionError`.
- ``"lost_answers"``: also provide a ``lost_answers`` fixture returning a `LostAnswerInjector`. Its
  ``lose_answers(operation)`` arms the backend so that, until ``clear()``, every call of that driver operation
  (``"create"``, ``"replace"`` or ``"delete"``) *commits on the service* and then reaches the driver as a lost
  answer: a timeout, a reset connection or a 5xx, after the SDK's own retries (each retry commits or is refused
  by the service, and loses its answer too), so the driver raises `BackendUnavailableError`. Reads and listings
  must keep working while it is armed. It must affect every store ``make_store`` returns (or at least the store
  of the test's ``store`` fixture). The suite calls ``clear()`` after each such test. The memory driver does it
  with `MemoryDriver.lose_next_answers`; the AWS backend with ``multicloud_store_aws.testing.LostAnswers``.
- ``"listing_lag"``: the service documents that a listing may lag behind writes (AWS ``ListSecrets``: minutes).
  Listing tests then re-list until the expected ids appear (or disappear) within ``listing_lag_seconds``
  (a class attribute, default 300) instead of checking one listing, and the laziness test, which cannot be
  observed on such a service, is skipped. Declare it for a driver of a real service, not for an emulator.

Backend-independent cases run on every backend: a store retried with the identical values succeeds (the caller's
retry after a lost answer), with other values or over another deployment's secret it is refused; every listed id
can be read and deleted.

Skips come only from those declarations, never from the backend's name.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Protocol
from uuid import UUID

import pytest

from multicloud_store.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    InvalidSecretError,
    SecretExistsError,
    SecretNotFoundError,
)
from multicloud_store.store import SecretsStore

__all__ = ["BAD_IDS", "BAD_VALUES", "FaultInjector", "LostAnswerInjector", "StoreContract", "StoreFactory"]

StoreFactory = Callable[[str], SecretsStore]

SENTINEL = "sentinel-VALUE-must-never-leak-7c1f"

# Inputs that must be refused with InvalidSecretError before any network call.
BAD_IDS: list[Any] = [
    "not-a-uuid",
    "",
    "12345",
    "8c9e1f52-2d5f-4c5e-9d0e-4b7c1d1f0a1",  # one digit short
    "8c9e1f52-2d5f-4c5e-9d0e-4b7c1d1f0a11/../x",
    f"{SENTINEL}",
    123,
    12.5,
    None,
    b"8c9e1f52-2d5f-4c5e-9d0e-4b7c1d1f0a11",
    ["8c9e1f52-2d5f-4c5e-9d0e-4b7c1d1f0a11"],
    object(),
]
BAD_VALUES: list[Any] = [
    None,
    "key=value",
    [("key", "value")],
    {"key": 1},
    {"key": None},
    {"key": b"bytes"},
    {"key": ["list"]},
    {"key": {"nested": "dict"}},
    {1: "value"},
    {None: "value"},
    {b"key": "value"},
    {"": "value"},
    {"ke\x00y": "value"},
    {"key": "val\x00ue"},
    {"key": "\ud800"},  # a lone surrogate cannot be stored as UTF-8
    {"\udfff": "value"},
    {"key": True},
    {"key": 1.5},
]


class FaultInjector(Protocol):
    """Makes a backend fail on purpose, for the suite's error-mapping tests."""

    def unavailable(self) -> None:
        """Make every backend call fail as unreachable, throttled or 5xx, until `clear`."""

    def permission_denied(self) -> None:
        """Make every backend call fail as denied by access control, until `clear`."""

    def clear(self) -> None:
        """Stop failing."""


class LostAnswerInjector(Protocol):
    """Makes a backend commit writes and then lose their answers, for the suite's verification tests."""

    def lose_answers(self, operation: str) -> None:
        """Until `clear`, let every call of ``operation`` commit on the service, then lose its answer.

        Args:
            operation: ``create``, ``replace`` or ``delete``. The driver then fails as unreachable
                (`BackendUnavailableError`), after the SDK's retries lost their answers too.
        """

    def clear(self) -> None:
        """Answer normally again."""


def _deployment() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


class StoreContract:
    """Tests every backend must pass. Subclass it and provide the ``make_store`` fixture."""

    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: How many secrets the listing test creates (enough for several pages on every built-in backend).
    list_count: ClassVar[int] = 250
    #: Threads in the concurrency test.
    threads: ClassVar[int] = 8
    #: With the ``listing_lag`` capability: how long a listing may lag behind writes.
    listing_lag_seconds: ClassVar[float] = 300.0

    # -- fixtures -----------------------------------------------------------------------------------------

    @pytest.fixture
    def store(self, make_store: StoreFactory) -> SecretsStore:
        """A store of a fresh deployment."""
        return make_store(_deployment())

    @pytest.fixture
    def other_store(self, make_store: StoreFactory) -> SecretsStore:
        """A store of another fresh deployment on the same backend."""
        return make_store(_deployment())

    @pytest.fixture
    def fault_injector(self, request: pytest.FixtureRequest) -> Iterator[FaultInjector]:
        """The subclass's ``faults`` fixture, or a skip when the backend declares none."""
        if "faults" not in self.capabilities:
            pytest.skip("this backend declares no 'faults' capability")
        injector: FaultInjector = request.getfixturevalue("faults")
        yield injector
        injector.clear()

    @pytest.fixture
    def answer_loser(self, request: pytest.FixtureRequest) -> Iterator[LostAnswerInjector]:
        """The subclass's ``lost_answers`` fixture, or a skip when the backend declares no such capability."""
        if "lost_answers" not in self.capabilities:
            pytest.skip("this backend declares no 'lost_answers' capability")
        injector: LostAnswerInjector = request.getfixturevalue("lost_answers")
        yield injector
        injector.clear()

    def _listed(self, store: SecretsStore, expected: Collection[UUID]) -> list[UUID]:
        """One listing; with ``listing_lag``, re-list (bounded) until it shows exactly ``expected``."""
        listed = list(store.list_secret_ids())
        if "listing_lag" not in self.capabilities:
            return listed
        deadline = time.monotonic() + self.listing_lag_seconds
        pause = 0.5
        while set(listed) != set(expected) and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 15.0)
            listed = list(store.list_secret_ids())
        return listed

    # -- create and read ----------------------------------------------------------------------------------

    def test_store_then_get(self, store: SecretsStore) -> None:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"user": "admin", "password": "hunter2"})
        assert store.get_secret_values(sid) == {"user": "admin", "password": "hunter2"}
        assert store.secret_exists(sid)

    def test_get_returns_a_copy(self, store: SecretsStore) -> None:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"a": "1"})
        store.get_secret_values(sid)["a"] = "changed"
        assert store.get_secret_values(sid) == {"a": "1"}

    def test_string_ids_are_accepted(self, store: SecretsStore) -> None:
        sid = uuid.uuid4()
        store.store_secret_values(str(sid).upper(), {"a": "1"})  # type: ignore[arg-type]
        assert store.get_secret_values(sid) == {"a": "1"}

    def test_empty_values(self, store: SecretsStore) -> None:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {})
        assert store.get_secret_values(sid) == {}
        store.update_secret_values(sid, {"now": "set"})
        store.update_secret_values(sid, {})
        assert store.get_secret_values(sid) == {}

    def test_unicode_and_awkward_text(self, store: SecretsStore) -> None:
        sid = uuid.uuid4()
        values = {
            "emoji 🔑": "🙈🙉🙊",
            "中文": "秘密",
            "rtl": "סוד",
            "multi\nline": "line 1\nline 2\r\n",
            "quotes": "\"'`\\",
            "json": '{"values": {"x": "y"}}',
            "spaces ": "  padded  ",
            "empty": "",
            "control": "\t\x01\x1f",
        }
        store.store_secret_values(sid, values)
        assert store.get_secret_values(sid) == values

    # -- exists -------------------------------------------------------------------------------------------

    def test_store_existing_id_is_refused(self, store: SecretsStore) -> None:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"a": "1"})
        with pytest.raises(SecretExistsError) as info:
            store.store_secret_values(sid, {"a": "2"})
        assert not isinstance(info.value, KeyError)  # ZenML retries forever on KeyError
        assert store.get_secret_values(sid) == {"a": "1"}

    def test_store_retried_with_identical_values_succeeds(
        self, store: SecretsStore, other_store: SecretsStore
    ) -> None:
        # A caller whose first store lost its answer retries: it finds its own identical values, and succeeds.
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"a": "1", "b": "2"})
        store.store_secret_values(sid, {"b": "2", "a": "1"})
        assert store.get_secret_values(sid) == {"a": "1", "b": "2"}
        for different in ({"a": "1"}, {"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "other"}):
            with pytest.raises(SecretExistsError):
                store.store_secret_values(sid, different)
        assert store.get_secret_values(sid) == {"a": "1", "b": "2"}
        # The same values under another deployment's secret are still someone else's secret.
        theirs = uuid.uuid4()
        other_store.store_secret_values(theirs, {"a": "1"})
        with pytest.raises(SecretExistsError):
            store.store_secret_values(theirs, {"a": "1"})
        assert other_store.get_secret_values(theirs) == {"a": "1"}
        assert not store.secret_exists(theirs)

    def test_store_id_of_other_deployment_is_refused(
        self, store: SecretsStore, other_store: SecretsStore
    ) -> None:
        sid = uuid.uuid4()
        other_store.store_secret_values(sid, {"theirs": "1"})
        with pytest.raises(SecretExistsError):
            store.store_secret_values(sid, {"mine": "2"})
        assert other_store.get_secret_values(sid) == {"theirs": "1"}

    # -- not found ----------------------------------------------------------------------------------------

    @pytest.mark.parametrize("operation", ["get", "update", "delete"])
    def test_missing_id(self, store: SecretsStore, operation: str) -> None:
        sid = uuid.uuid4()
        with pytest.raises(SecretNotFoundError) as info:
            self._call(store, operation, sid)
        assert isinstance(info.value, KeyError)
        assert not store.secret_exists(sid)

    @pytest.mark.parametrize("operation", ["get", "update", "delete"])
    def test_other_deployments_secret_is_invisible(
        self, store: SecretsStore, other_store: SecretsStore, operation: str
    ) -> None:
        sid = uuid.uuid4()
        other_store.store_secret_values(sid, {"theirs": "1"})
        with pytest.raises(SecretNotFoundError):
            self._call(store, operation, sid)
        assert not store.secret_exists(sid)
        assert other_store.get_secret_values(sid) == {"theirs": "1"}

    @staticmethod
    def _call(store: SecretsStore, operation: str, sid: UUID) -> None:
        if operation == "get":
            store.get_secret_values(sid)
        elif operation == "update":
            store.update_secret_values(sid, {"new": "value"})
        else:
            store.delete_secret_values(sid)

    # -- update and delete --------------------------------------------------------------------------------

    def test_update_replaces_the_whole_dict(self, store: SecretsStore) -> None:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"keep": "1", "drop": "2"})
        store.update_secret_values(sid, {"keep": "changed", "add": "3"})
        assert store.get_secret_values(sid) == {"keep": "changed", "add": "3"}

    def test_delete_then_store_again_at_once(self, store: SecretsStore) -> None:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        store.delete_secret_values(sid)
        assert not store.secret_exists(sid)
        with pytest.raises(SecretNotFoundError):
            store.delete_secret_values(sid)
        store.store_secret_values(sid, {"v": "2"})
        assert store.get_secret_values(sid) == {"v": "2"}

    def test_readers_see_old_or_new_never_a_mix(self, store: SecretsStore) -> None:
        sid = uuid.uuid4()
        old = {f"k{i}": "old" for i in range(20)}
        new = {f"k{i}": "new" for i in range(10)}
        store.store_secret_values(sid, old)
        seen: list[dict[str, str]] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                seen.append(store.get_secret_values(sid))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for _ in range(5):
                store.update_secret_values(sid, new)
                store.update_secret_values(sid, old)
        finally:
            stop.set()
            reader.join()
        assert seen
        assert all(values in (old, new) for values in seen)

    # -- validation ---------------------------------------------------------------------------------------

    @pytest.mark.parametrize("bad_id", BAD_IDS, ids=lambda v: type(v).__name__ + ":" + repr(v)[:20])
    def test_bad_id_is_refused(self, store: SecretsStore, bad_id: Any) -> None:
        for call in (
            lambda: store.store_secret_values(bad_id, {"a": "1"}),
            lambda: store.get_secret_values(bad_id),
            lambda: store.update_secret_values(bad_id, {"a": "1"}),
            lambda: store.delete_secret_values(bad_id),
        ):
            with pytest.raises(InvalidSecretError) as info:
                call()
            assert isinstance(info.value, ValueError)
            assert SENTINEL not in str(info.value)

    @pytest.mark.parametrize("bad_values", BAD_VALUES, ids=lambda v: repr(v)[:30])
    def test_bad_values_are_refused_and_change_nothing(self, store: SecretsStore, bad_values: Any) -> None:
        sid = uuid.uuid4()
        with pytest.raises(InvalidSecretError):
            store.store_secret_values(sid, bad_values)
        assert not store.secret_exists(sid)
        store.store_secret_values(sid, {"good": "1"})
        with pytest.raises(InvalidSecretError):
            store.update_secret_values(sid, bad_values)
        assert store.get_secret_values(sid) == {"good": "1"}

    def test_payload_at_the_limit_and_one_byte_over(self, store: SecretsStore) -> None:
        limit = store.driver.limits.max_payload_bytes
        sid = uuid.uuid4()
        overhead = store.payload_size(sid, {"k": ""})
        exact = {"k": "x" * (limit - overhead)}
        assert store.payload_size(sid, exact) == limit
        store.store_secret_values(sid, exact)
        assert store.get_secret_values(sid) == exact

        over = {"k": "x" * (limit - overhead + 1)}
        with pytest.raises(InvalidSecretError) as info:
            store.update_secret_values(sid, over)
        assert str(limit) in str(info.value)
        assert str(limit + 1) in str(info.value)
        assert store.get_secret_values(sid) == exact

        fresh = uuid.uuid4()
        with pytest.raises(InvalidSecretError):
            store.store_secret_values(fresh, {"k": "x" * (limit - overhead + 1)})
        assert not store.secret_exists(fresh)

    def test_multibyte_text_counts_in_bytes(self, store: SecretsStore) -> None:
        limit = store.driver.limits.max_payload_bytes
        sid = uuid.uuid4()
        overhead = store.payload_size(sid, {"k": ""})
        # Fits in characters, not in bytes: each "é" is two UTF-8 bytes.
        with pytest.raises(InvalidSecretError):
            store.store_secret_values(sid, {"k": "é" * (limit - overhead)})
        assert not store.secret_exists(sid)

    # -- listing ------------------------------------------------------------------------------------------

    def test_list_across_pages_only_this_deployment(
        self, store: SecretsStore, other_store: SecretsStore
    ) -> None:
        mine = {uuid.uuid4() for _ in range(self.list_count)}
        theirs = {uuid.uuid4() for _ in range(3)}
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda s: store.store_secret_values(s, {"i": str(s)}), mine))
            list(pool.map(lambda s: other_store.store_secret_values(s, {"i": str(s)}), theirs))
        listed = self._listed(store, mine)
        assert len(listed) == len(set(listed))
        assert set(listed) == mine
        assert set(self._listed(other_store, theirs)) == theirs

    def test_listed_means_deletable(self, store: SecretsStore, other_store: SecretsStore) -> None:
        mine = {uuid.uuid4() for _ in range(12)}
        for sid in mine:
            store.store_secret_values(sid, {"i": str(sid)})
        other_store.store_secret_values(uuid.uuid4(), {"theirs": "1"})
        listed = self._listed(store, mine)
        assert set(listed) == mine
        for sid in listed:
            assert store.get_secret_values(sid) == {"i": str(sid)}
            store.delete_secret_values(sid)
        assert self._listed(store, set()) == []

    def test_list_is_lazy(self, store: SecretsStore) -> None:
        if "listing_lag" in self.capabilities:
            pytest.skip("a listing that lags behind writes cannot show laziness")
        sid = uuid.uuid4()
        ids = store.list_secret_ids()
        store.store_secret_values(sid, {"a": "1"})  # stored after the iterator was made, before it was read
        assert sid in set(ids)

    # -- concurrency --------------------------------------------------------------------------------------

    def test_concurrent_use_from_threads(self, store: SecretsStore) -> None:
        def worker(n: int) -> None:
            for round_ in range(5):
                sid = uuid.uuid4()
                store.store_secret_values(sid, {"n": str(n), "round": str(round_)})
                assert store.get_secret_values(sid) == {"n": str(n), "round": str(round_)}
                store.update_secret_values(sid, {"n": str(n)})
                assert store.get_secret_values(sid) == {"n": str(n)}
                store.delete_secret_values(sid)
                assert not store.secret_exists(sid)

        with ThreadPoolExecutor(self.threads) as pool:
            for future in [pool.submit(worker, n) for n in range(self.threads)]:
                future.result()

    def test_concurrent_store_of_one_id_has_one_winner(self, store: SecretsStore) -> None:
        sid = uuid.uuid4()
        barrier = threading.Barrier(self.threads)

        def attempt(n: int) -> bool:
            barrier.wait()
            try:
                store.store_secret_values(sid, {"winner": str(n)})
            except SecretExistsError:
                return False
            return True

        with ThreadPoolExecutor(self.threads) as pool:
            results = list(pool.map(attempt, range(self.threads)))
        assert results.count(True) == 1
        winner = results.index(True)
        assert store.get_secret_values(sid) == {"winner": str(winner)}

    # -- batch read ---------------------------------------------------------------------------------------

    def test_get_many_reports_each_id(self, store: SecretsStore, other_store: SecretsStore) -> None:
        ours = [uuid.uuid4() for _ in range(25)]
        for sid in ours:
            store.store_secret_values(sid, {"id": str(sid)})
        missing, foreign = uuid.uuid4(), uuid.uuid4()
        other_store.store_secret_values(foreign, {"x": "y"})
        outcomes = store.get_many([*ours, missing, foreign])
        assert all(outcomes[s].status == "ok" and outcomes[s].values == {"id": str(s)} for s in ours)
        assert outcomes[missing].status == "not_found"
        assert outcomes[foreign].status == "not_ours"
        assert isinstance(outcomes[missing].error, SecretNotFoundError)

    # -- secrecy ------------------------------------------------------------------------------------------

    def test_values_never_in_repr_or_errors(
        self, store: SecretsStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level("DEBUG")
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"password": SENTINEL})
        store.get_secret_values(sid)
        errors = []
        calls: list[Callable[[], object]] = [
            lambda: store.store_secret_values(sid, {"password": SENTINEL, "other": SENTINEL}),
            lambda: store.update_secret_values(sid, {"password": SENTINEL + "\x00"}),
            lambda: store.update_secret_values(sid, {"password": SENTINEL, "port": 5}),  # type: ignore[dict-item]
            lambda: store.update_secret_values(sid, {"password": SENTINEL * 100_000}),
        ]
        for call in calls:
            with pytest.raises(Exception) as info:
                call()
            errors.append(info.value)
        store.update_secret_values(sid, {"password": SENTINEL})
        store.delete_secret_values(sid)
        texts = [repr(store), repr(store.driver), caplog.text, *map(str, errors), *map(repr, errors)]
        assert not [text for text in texts if SENTINEL in text]

    # -- failures -----------------------------------------------------------------------------------------

    def test_unavailable_backend(self, store: SecretsStore, fault_injector: FaultInjector) -> None:
        sid, written = uuid.uuid4(), uuid.uuid4()
        store.store_secret_values(written, {"v": "1"})
        fault_injector.unavailable()
        for call in (
            lambda: store.get_secret_values(written),
            lambda: store.store_secret_values(sid, {"v": "1"}),
            lambda: store.update_secret_values(written, {"v": "2"}),
            lambda: store.delete_secret_values(written),
        ):
            with pytest.raises(BackendUnavailableError):
                call()
        fault_injector.clear()
        assert store.get_secret_values(written) == {"v": "1"}
        # Nothing half-written: the failed store left either nothing or the whole secret.
        assert not store.secret_exists(sid) or store.get_secret_values(sid) == {"v": "1"}

    def test_permission_denied(self, store: SecretsStore, fault_injector: FaultInjector) -> None:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        fault_injector.permission_denied()
        for call in (
            lambda: store.get_secret_values(sid),
            lambda: store.store_secret_values(uuid.uuid4(), {"v": "1"}),
            lambda: store.update_secret_values(sid, {"v": "2"}),
            lambda: store.delete_secret_values(sid),
            lambda: list(store.list_secret_ids()),
        ):
            with pytest.raises(BackendPermissionError) as info:
                call()
            assert not isinstance(info.value, KeyError)
        fault_injector.clear()
        assert store.get_secret_values(sid) == {"v": "1"}

    # -- lost answers: the write committed, every answer to it was lost ---------------------------------------

    def test_lost_answer_to_store_is_verified(
        self, store: SecretsStore, answer_loser: LostAnswerInjector
    ) -> None:
        sid = uuid.uuid4()
        answer_loser.lose_answers("create")
        store.store_secret_values(sid, {"v": "1"})  # one verification read finds it stored
        answer_loser.clear()
        assert store.get_secret_values(sid) == {"v": "1"}
        # Verification is about this call's own values: a lost answer never turns a refusal into success (the
        # refusal itself may be the answer that was lost, so the caller sees unavailable or exists).
        answer_loser.lose_answers("create")
        with pytest.raises((SecretExistsError, BackendUnavailableError)):
            store.store_secret_values(sid, {"v": "2"})
        answer_loser.clear()
        assert store.get_secret_values(sid) == {"v": "1"}

    def test_lost_answer_to_update_is_verified(
        self, store: SecretsStore, answer_loser: LostAnswerInjector
    ) -> None:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        assert store.get_secret_values(sid) == {"v": "1"}  # fills the cache where there is one
        answer_loser.lose_answers("replace")
        store.update_secret_values(sid, {"v": "2"})
        answer_loser.clear()
        assert store.get_secret_values(sid) == {"v": "2"}

    def test_lost_answer_to_delete_is_verified(
        self, store: SecretsStore, answer_loser: LostAnswerInjector
    ) -> None:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        assert store.get_secret_values(sid) == {"v": "1"}
        answer_loser.lose_answers("delete")
        store.delete_secret_values(sid)
        answer_loser.clear()
        assert not store.secret_exists(sid)
        store.store_secret_values(sid, {"v": "again"})
        assert store.get_secret_values(sid) == {"v": "again"}

    def test_health_check(self, store: SecretsStore) -> None:
        store.check()
