"""The ``aws`` backend: AWS Secrets Manager through boto3.

One AWS secret per store secret, under the name the dispatcher chooses. The payload (the dispatcher's envelope)
is the secret's ``SecretString``; the labels become tags, so operators can filter on them and write IAM conditions
(``aws:ResourceTag/mcs_deployment``). Every read is one ``GetSecretValue``: ownership is proven by the envelope,
so tags are never fetched on the read path.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError

from multicloud_store import __version__ as _VERSION
from multicloud_store.driver import DriverLimits, StoredSecret
from multicloud_store.errors import (
    BackendError,
    ConfigurationError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)
from multicloud_store_aws import _redact
from multicloud_store_aws.errors import error_for_code, is_scheduled_for_deletion, translate
from multicloud_store_aws.settings import AwsSettings

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import FilterTypeDef

    from multicloud_store.settings import EnvSettings

__all__ = ["AwsDriver"]

logger = logging.getLogger("multicloud_store.aws")

_BATCH = 20  # BatchGetSecretValue takes at most 20 ids per call
_PAGE = 100  # ListSecrets' largest page
_MAX_FILTERS = 10  # ListSecrets accepts at most 10 filters
# What a ListSecrets filter value may contain (a leading "!" would negate it); other labels are checked here only.
_FILTER_VALUE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 :_@/+=.-")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
# Re-creating a name whose forced deletion AWS is still finishing: jittered exponential backoff, these bounds.
_RECREATE_FIRST_DELAY = 0.25
_RECREATE_MAX_DELAY = 5.0
# A DeletedDate further ahead than this is a recovery window, not a forced deletion still in progress.
_FORCED_DELETION_SLACK = timedelta(hours=1)


class _AssumedRoleProvider(CredentialProvider):
    """Hands botocore the assumed role's credentials: botocore refreshes them before they expire."""

    METHOD = "assume-role"
    # Providers not shipped with botocore must prefix their canonical name with "custom".
    CANONICAL_NAME = "custom-multicloud-store-assume-role"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        """Return the role's (deferred, refreshable) credentials."""
        return self._credentials


class AwsDriver:
    """AWS Secrets Manager. Thread-safe: one boto3 client, created on first use, shared by all threads.

    Args:
        settings: Its settings; read from ``MULTICLOUD_STORE_AWS_*`` when omitted.
        client: A ready ``secretsmanager`` client (tests, or a client configured by hand). The driver does not
            close a client it was given.

    Raises:
        ConfigurationError: No region can be resolved, or the profile does not exist (no network call is made).
    """

    backend_name: ClassVar[str] = "aws"
    settings_class: ClassVar[type[EnvSettings]] = AwsSettings
    # Tag keys: up to 128 characters of Unicode letters, digits, spaces and _.:/=+-@, not starting with "aws:";
    # values up to 256 of the same. Names: up to 512 of ASCII letters, digits and /_+=.@-.
    _LIMITS = DriverLimits(
        max_payload_bytes=65_536,
        name_pattern=r"[A-Za-z0-9/_+=.@-]+",
        max_name_length=512,
        max_labels=50,
        label_key_pattern=r"(?!aws:)[\w .:/=+@-]{1,128}",
        label_value_pattern=r"[\w .:/=+@-]{0,256}",
        batch_read_size=_BATCH,
    )

    def __init__(
        self, settings: AwsSettings | None = None, *, client: SecretsManagerClient | None = None
    ) -> None:
        self.settings = settings if settings is not None else AwsSettings.from_environ()
        self._client = client
        self._owns_client = client is None
        self._lock = threading.Lock()
        self._closed = False
        self._session: boto3.session.Session | None = None
        # botocore logs request and response bodies at DEBUG: keep values and credentials out of them.
        _redact.install()
        _redact.register_secrets(
            secret.get_secret_value()
            for secret in (self.settings.secret_access_key, self.settings.session_token)
            if secret is not None
        )
        if client is not None:
            self._region: str | None = client.meta.region_name
        else:
            # Reads only variables and config files: fails fast on a missing region or profile, no network I/O.
            self._session = self._source_session()
            self._region = self._session.region_name
            if not self._region:
                raise ConfigurationError(
                    "no AWS region: set MULTICLOUD_STORE_AWS_REGION (or AWS_REGION, or a region in the profile)",
                    variable="MULTICLOUD_STORE_AWS_REGION",
                    backend="aws",
                )

    def __repr__(self) -> str:
        return (
            f"AwsDriver(region={self._region!r}, endpoint_url={self.settings.endpoint_url!r}, "
            f"credentials={self._credential_source()!r})"
        )

    @property
    def limits(self) -> DriverLimits:
        """What AWS Secrets Manager accepts."""
        return self._LIMITS

    def location(self) -> tuple[str | None, ...]:
        """Identify the store from settings alone (the account id would need a call): region, endpoint, identity.

        Returns:
            ``(region, endpoint URL, profile, access key id, role ARN)``.
        """
        endpoint = (self.settings.endpoint_url or "").rstrip("/").lower() or None
        settings = self.settings
        return (self._region, endpoint, settings.profile, settings.access_key_id, settings.role_arn)

    # -- the client ---------------------------------------------------------------------------------------

    @property
    def client(self) -> SecretsManagerClient:
        """The boto3 ``secretsmanager`` client, created on first use (no network I/O until the first call).

        Raises:
            BackendError: The driver is closed.
            ConfigurationError: The credentials or the role cannot be set up.
        """
        client = self._client
        if client is not None and not self._closed:
            return client
        with self._lock:
            if self._closed:
                raise BackendError("this AWS driver is closed", backend="aws")
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _credential_source(self) -> str:
        if not self._owns_client:
            return "injected client"
        settings = self.settings
        source = "static keys" if settings.uses_static_keys() else "default chain"
        if settings.profile:
            source = f"profile {settings.profile}"
        if settings.role_arn:
            source = f"role {settings.role_arn} from {source}"
        return source

    def _source_session(self) -> boto3.session.Session:
        """A session of its own (never boto3's default one), with the static keys or the profile."""
        settings = self.settings
        try:
            return boto3.session.Session(
                aws_access_key_id=settings.access_key_id,
                aws_secret_access_key=(
                    settings.secret_access_key.get_secret_value() if settings.secret_access_key else None
                ),
                aws_session_token=settings.session_token.get_secret_value()
                if settings.session_token
                else None,
                region_name=settings.region,
                profile_name=settings.profile,
            )
        except BotoCoreError as exc:
            raise translate(exc, action="configure") from exc

    def _config(self) -> Config:
        settings = self.settings
        return Config(
            # total_max_attempts counts the first attempt too (max_attempts would count retries only).
            retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            # As many pooled connections as threads the store serves: fewer makes urllib3 discard connections.
            max_pool_connections=settings.max_pool_connections,
            user_agent_extra=f"multicloud-store/{_VERSION}",
        )

    def _new_client(self) -> SecretsManagerClient:
        assert self._session is not None  # set in __init__ whenever no client was injected
        settings = self.settings
        config = self._config()
        session = self._role_session(self._session, config) if settings.role_arn else self._session
        endpoint = settings.endpoint_url
        if endpoint and urlsplit(endpoint).scheme == "http" and urlsplit(endpoint).hostname not in _LOOPBACK:
            logger.warning(
                "MULTICLOUD_STORE_AWS_ENDPOINT_URL is plain http:// to another host: secret values cross the "
                "network unencrypted; use it for emulators only"
            )
        try:
            return session.client(
                "secretsmanager", region_name=self._region, endpoint_url=endpoint, config=config
            )
        except BotoCoreError as exc:
            raise translate(exc, action="configure") from exc

    def _role_session(self, source: boto3.session.Session, config: Config) -> boto3.session.Session:
        """A session whose credentials are the role's, assumed with the source session's credentials.

        botocore's own `AssumeRoleCredentialFetcher` calls STS and caches the result; the
        `DeferredRefreshableCredentials` around it assume the role on first use and again shortly before the
        credentials expire, under botocore's lock, while other threads keep signing with the current ones.
        """
        settings = self.settings
        assert settings.role_arn is not None
        try:
            source_credentials = source.get_credentials()
        except BotoCoreError as exc:
            raise translate(exc, action="configure") from exc
        if source_credentials is None:
            raise ConfigurationError(
                "MULTICLOUD_STORE_AWS_ROLE_ARN is set, but there are no credentials to assume it with: set "
                "MULTICLOUD_STORE_AWS_ACCESS_KEY_ID and MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY, "
                "MULTICLOUD_STORE_AWS_PROFILE, or provide credentials through the standard AWS chain",
                variable="MULTICLOUD_STORE_AWS_ROLE_ARN",
                backend="aws",
            )
        region = self._region

        def create_sts_client(service_name: str, **kwargs: Any) -> BaseClient:
            # STS honours AWS_ENDPOINT_URL_STS; the Secrets Manager endpoint override is not STS's.
            return source.client(service_name, region_name=region, config=config, **kwargs)  # type: ignore[call-overload,no-any-return]

        extra_args: dict[str, Any] = {"RoleSessionName": settings.role_session_name}
        if settings.role_external_id:
            extra_args["ExternalId"] = settings.role_external_id
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=create_sts_client,
            source_credentials=source_credentials,
            role_arn=settings.role_arn,
            extra_args=extra_args,
        )
        credentials = DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method=_AssumedRoleProvider.METHOD
        )
        core = botocore.session.Session(profile=settings.profile)
        core.register_component(
            "credential_provider", CredentialResolver([_AssumedRoleProvider(credentials)])
        )
        return boto3.session.Session(botocore_session=core, region_name=region)

    # -- the protocol -------------------------------------------------------------------------------------

    def create(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Create the secret with its tags; see `SecretsDriver.create`.

        AWS finishes a forced deletion (``ForceDeleteWithoutRecovery``) in the background, and until then a
        ``CreateSecret`` of the name fails with ``InvalidRequestException`` ("already scheduled for deletion");
        AWS says to back off and retry. Only on that error, and only when ``DescribeSecret`` shows no recovery
        window, the create is retried with jittered exponential backoff for up to
        ``MULTICLOUD_STORE_AWS_RECREATE_WAIT_SECONDS``.

        Raises:
            SecretExistsError: The name is taken, or held by a secret in its recovery window (the message says
                until when, and how to restore it).
            SecretStateError: A forced deletion of the name was still not finished after the wait.
        """
        request: dict[str, Any] = {
            "Name": name,
            "SecretString": payload,
            "Tags": [{"Key": key, "Value": value} for key, value in labels.items()],
        }
        if self.settings.kms_key_id:
            request["KmsKeyId"] = self.settings.kms_key_id
        deadline: float | None = None
        attempt = 0
        while True:
            try:
                # boto3 fills in ClientRequestToken: botocore's retries resend the same one, so they are
                # idempotent.
                self.client.create_secret(**request)
                return
            except ClientError as exc:
                code, message = _code_and_message(exc)
                if code == "ResourceExistsException":
                    raise self._exists_error(name, scheduled=False) from exc
                if not is_scheduled_for_deletion(code, message):
                    raise translate(exc, action="create", name=name) from exc
                if deadline is None:
                    # First refusal only: one DescribeSecret tells a recovery window from a deletion in progress.
                    deleted, found = self._deletion_date(name)
                    if deleted is not None and deleted > datetime.now(timezone.utc) + _FORCED_DELETION_SLACK:
                        raise self._exists_error(name, scheduled=True, deleted=deleted, found=found) from exc
                    started = time.monotonic()
                    deadline = started + self.settings.recreate_wait_seconds
                # Full jitter: concurrent re-creators do not retry in step.
                delay = random.uniform(0, min(_RECREATE_MAX_DELAY, _RECREATE_FIRST_DELAY * 2**attempt))  # noqa: S311
                attempt += 1
                if time.monotonic() + delay > deadline:
                    raise self._still_deleting(name, attempt, time.monotonic() - started) from exc
                logger.debug(
                    "secret %r is still being deleted by AWS; retrying the create in %.2f s", name, delay
                )
                time.sleep(delay)
            except BotoCoreError as exc:
                raise translate(exc, action="create", name=name) from exc

    def _deletion_date(self, name: str) -> tuple[datetime | None, bool]:
        """The secret's ``DeletedDate`` and whether ``DescribeSecret`` found it (a failure counts as unknown)."""
        try:
            deleted = self.client.describe_secret(SecretId=name).get("DeletedDate")
        except ClientError as exc:
            return None, _code_and_message(exc)[0] != "ResourceNotFoundException"
        except BotoCoreError:
            return None, True
        if deleted is not None and deleted.tzinfo is None:
            deleted = deleted.replace(tzinfo=timezone.utc)
        return deleted, True

    def _still_deleting(self, name: str, attempts: int, waited: float) -> SecretStateError:
        wait = self.settings.recreate_wait_seconds
        return SecretStateError(
            f"secret {name!r} cannot be stored yet: a secret of that name was deleted for good "
            "(ForceDeleteWithoutRecovery) and AWS is still finishing that deletion in the background. "
            f"CreateSecret answered InvalidRequestException (already scheduled for deletion) {attempts} time(s) "
            f"over {waited:.1f} s; MULTICLOUD_STORE_AWS_RECREATE_WAIT_SECONDS={wait:g} bounds that wait. Store "
            "it again later",
            backend="aws",
        )

    def _exists_error(
        self, name: str, *, scheduled: bool, deleted: datetime | None = None, found: bool = False
    ) -> SecretExistsError:
        """Say whether the name is taken by a live secret or by one in its recovery window, and until when."""
        if not found:
            try:
                # Only on this error path: one DescribeSecret to tell the two cases apart and to find the date.
                deleted = self.client.describe_secret(SecretId=name).get("DeletedDate")
            except (ClientError, BotoCoreError):
                logger.debug(
                    "describing secret %r after a failed create failed; reporting it as existing", name
                )
        if deleted is None and not scheduled:
            return SecretExistsError(
                f"secret {name!r} already exists (ResourceExistsException)", backend="aws"
            )
        when = f" until {deleted.isoformat(timespec='seconds')}" if deleted is not None else ""
        return SecretExistsError(
            f"secret {name!r} cannot be stored: a secret of that name is scheduled for deletion{when}, and AWS "
            "keeps its name for the recovery window (MULTICLOUD_STORE_AWS_RECOVERY_WINDOW_DAYS). Restore it with "
            f"`aws secretsmanager restore-secret --secret-id {name}`, wait until then, or remove it for good "
            f"with `aws secretsmanager delete-secret --secret-id {name} --force-delete-without-recovery`",
            backend="aws",
        )

    def read(self, name: str) -> StoredSecret:
        """Read the payload with one ``GetSecretValue``; see `SecretsDriver.read`.

        The labels are not fetched (that would be a second round trip): the dispatcher proves ownership from
        the envelope. A secret scheduled for deletion is reported as missing.
        """
        try:
            response = self.client.get_secret_value(SecretId=name)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, action="read", name=name) from exc
        # A binary-only secret was not written by this store: an empty payload makes the dispatcher say so.
        return StoredSecret(name, response.get("SecretString", ""), {}, response.get("VersionId"))

    def replace(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Write a new current version with ``PutSecretValue``; see `SecretsDriver.replace`.

        The tags are left as they are: the dispatcher passes the same labels it created the secret with.
        """
        try:
            self.client.put_secret_value(SecretId=name, SecretString=payload)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, action="replace", name=name) from exc

    def delete(self, name: str) -> None:
        """Delete at once, or schedule the deletion when a recovery window is set; see `SecretsDriver.delete`.

        AWS reports no error when a secret that does not exist is force-deleted; the dispatcher reads the secret
        (to prove ownership) before it deletes, so a missing id is reported by that read.
        """
        window = self.settings.recovery_window_days
        try:
            if window is None:
                self.client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
            else:
                self.client.delete_secret(SecretId=name, RecoveryWindowInDays=window)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, action="delete", name=name) from exc

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        """Yield the names of secrets tagged with all these labels, a page of 100 at a time.

        ListSecrets' ``tag-key`` and ``tag-value`` filters are prefix matches, and they are not paired (a key of
        one tag and the value of another match too), so they only narrow the pages: every tag is compared here.
        Secrets scheduled for deletion are not listed.
        """
        wanted = dict(labels)
        filters: list[FilterTypeDef] = []
        for key, value in wanted.items():
            if len(filters) + 2 > _MAX_FILTERS:
                break
            filters.append({"Key": "tag-key", "Values": [key]})
            if value and _FILTER_VALUE_CHARS.issuperset(value) and len(value) <= 512:
                filters.append({"Key": "tag-value", "Values": [value]})
        token: str | None = None
        while True:
            request: dict[str, Any] = {"MaxResults": _PAGE, "Filters": filters}
            if token:
                request["NextToken"] = token
            try:
                page = self.client.list_secrets(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, action="list") from exc
            for entry in page.get("SecretList", []):
                tags = {tag.get("Key"): tag.get("Value") for tag in entry.get("Tags", [])}
                if (
                    "Name" in entry
                    and "DeletedDate" not in entry
                    and all(tags.get(k) == v for k, v in wanted.items())
                ):
                    yield entry["Name"]
            token = page.get("NextToken")
            if not token:
                return

    def read_many(self, names: list[str]) -> Mapping[str, StoredSecret | Exception]:
        """Read up to 20 secrets per ``BatchGetSecretValue``; see `SecretsDriver.read_many`.

        Each name maps to its secret, or to the error AWS reported for it (through the same table as single
        reads); a name AWS mentions in neither list is reported as not found.

        Raises:
            BackendError: The batch call itself failed (denied, unavailable, ...).
        """
        out: dict[str, StoredSecret | Exception] = {}
        for start in range(0, len(names), _BATCH):
            chunk = list(dict.fromkeys(names[start : start + _BATCH]))
            out.update(self._read_batch(chunk))
        return out

    def _read_batch(self, names: list[str]) -> dict[str, StoredSecret | Exception]:
        out: dict[str, StoredSecret | Exception] = {}
        token: str | None = None
        while True:
            request: dict[str, Any] = {"SecretIdList": names}
            if token:
                request["NextToken"] = token
            try:
                response = self.client.batch_get_secret_value(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, action="batch read") from exc
            for value in response.get("SecretValues", []):
                name = value.get("Name", "")
                out[name] = StoredSecret(name, value.get("SecretString", ""), {}, value.get("VersionId"))
            for error in response.get("Errors", []):
                name = error.get("SecretId", "")
                out[name] = error_for_code(
                    error.get("ErrorCode", ""), error.get("Message", ""), action="read", name=name
                )
            token = response.get("NextToken")
            if not token:
                break
        for name in names:
            if name not in out:
                out[name] = SecretNotFoundError(
                    f"read of secret {name!r} on AWS Secrets Manager: not in BatchGetSecretValue's answer",
                    backend="aws",
                )
        return {name: out[name] for name in names}

    def health_check(self) -> None:
        """Make one ``ListSecrets`` call of one result: proves the endpoint, the credentials and the permission.

        Raises:
            BackendError: The backend cannot be used.
            ConfigurationError: No credentials.
        """
        try:
            self.client.list_secrets(MaxResults=1)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, action="health check") from exc

    def close(self) -> None:
        """Close the client's connections if this driver created it. The driver may not be used afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
        if client is not None and self._owns_client:
            client.close()


def _code_and_message(exc: ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return str(error.get("Code", "")), str(error.get("Message", ""))
