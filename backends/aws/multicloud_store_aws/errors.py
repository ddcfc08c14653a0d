"""One table from AWS error codes (and botocore's own exceptions) to the shared error hierarchy.

The driver raises what `translate` returns with the botocore exception as ``__cause__``. Messages name the
secret, the operation and the AWS error code; they never contain a request payload. AWS's own message is quoted
only for codes whose messages are about identities, policies and states (never about parameter values).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    HTTPClientError,
    InvalidConfigError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSLError,
    UnknownCredentialError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from multicloud_store.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    MultiCloudStoreError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)

__all__ = ["ERROR_TABLE", "Rule", "error_for_code", "is_scheduled_for_deletion", "translate"]

BACKEND = "aws"

CREDENTIAL_VARIABLES = (
    "MULTICLOUD_STORE_AWS_ACCESS_KEY_ID and MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY, MULTICLOUD_STORE_AWS_PROFILE, "
    "or the standard AWS chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, web identity / IRSA, ECS or EKS pod identity, "
    "instance profile)"
)


@dataclass(frozen=True)
class Rule:
    """How one AWS error code is reported.

    Attributes:
        error: The class raised.
        hint: What it means for the user, in a few words.
        quote_aws: Whether AWS's message may be quoted (it names identities, policies or states, never values).
    """

    error: type[MultiCloudStoreError]
    hint: str
    quote_aws: bool = False


_DENIED = "denied by IAM: the caller needs the secretsmanager permission for this action on this secret"
_BAD_CREDENTIALS = "the AWS credentials were rejected"
_THROTTLED = "throttled by AWS after botocore's retries"
_UNAVAILABLE = "AWS Secrets Manager failed after botocore's retries"
_BAD_REQUEST = "AWS rejected a request parameter (a bug, or a name or setting AWS does not accept)"
_KMS_DENIED = (
    "AWS KMS refused the key: the caller needs kms:Decrypt (reads) and kms:GenerateDataKey (writes) on "
    "MULTICLOUD_STORE_AWS_KMS_KEY_ID, and the key must be enabled"
)
_KMS_UNUSABLE = "the KMS key is disabled, pending deletion or missing: check MULTICLOUD_STORE_AWS_KMS_KEY_ID"

#: AWS error code -> how it is reported. ``InvalidRequestException`` about a deletion is special-cased in
#: `error_for_code`: a secret scheduled for deletion is reported as missing.
ERROR_TABLE: Mapping[str, Rule] = {
    # Existence.
    "ResourceNotFoundException": Rule(SecretNotFoundError, "no such secret"),
    "ResourceExistsException": Rule(SecretExistsError, "a secret of that name already exists"),
    # State: "a parameter value is not valid for the current state of the resource".
    "InvalidRequestException": Rule(SecretStateError, "the secret's state does not allow this call", True),
    # Parameters: our own validation runs first, so these are bugs or unusual names, never retried.
    "InvalidParameterException": Rule(BackendError, _BAD_REQUEST),
    "InvalidParameterValue": Rule(BackendError, _BAD_REQUEST),
    "InvalidParameterCombination": Rule(BackendError, _BAD_REQUEST),
    "ValidationException": Rule(BackendError, _BAD_REQUEST),
    "MissingParameter": Rule(BackendError, _BAD_REQUEST),
    "InvalidNextTokenException": Rule(BackendError, "AWS rejected the listing's page token"),
    "MalformedPolicyDocumentException": Rule(BackendError, _BAD_REQUEST),
    "PreconditionNotMetException": Rule(BackendError, "a precondition of the request was not met", True),
    # Access control and authentication (STS codes too: a role is assumed on the first call).
    "AccessDeniedException": Rule(BackendPermissionError, _DENIED, True),
    "AccessDenied": Rule(BackendPermissionError, _DENIED, True),
    "UnauthorizedOperation": Rule(BackendPermissionError, _DENIED, True),
    "UnrecognizedClientException": Rule(
        BackendPermissionError, f"{_BAD_CREDENTIALS}: the access key id is unknown", True
    ),
    "InvalidClientTokenId": Rule(
        BackendPermissionError, f"{_BAD_CREDENTIALS}: the access key id is unknown", True
    ),
    "InvalidSignatureException": Rule(
        BackendPermissionError, f"{_BAD_CREDENTIALS}: wrong secret access key, or the clock is off", True
    ),
    "SignatureDoesNotMatch": Rule(
        BackendPermissionError, f"{_BAD_CREDENTIALS}: wrong secret access key, or the clock is off", True
    ),
    "IncompleteSignature": Rule(BackendPermissionError, _BAD_CREDENTIALS, True),
    "MissingAuthenticationToken": Rule(BackendPermissionError, _BAD_CREDENTIALS, True),
    "ExpiredTokenException": Rule(
        BackendPermissionError, f"{_BAD_CREDENTIALS}: the session token expired", True
    ),
    "ExpiredToken": Rule(BackendPermissionError, f"{_BAD_CREDENTIALS}: the session token expired", True),
    "RequestExpired": Rule(
        BackendPermissionError, f"{_BAD_CREDENTIALS}: the request expired (check the clock)"
    ),
    "RegionDisabledException": Rule(BackendPermissionError, "STS is not activated in this region", True),
    # Envelope encryption with KMS, as Secrets Manager reports it and as KMS itself does.
    "DecryptionFailure": Rule(BackendPermissionError, _KMS_DENIED, True),
    "EncryptionFailure": Rule(BackendPermissionError, _KMS_DENIED, True),
    "KMSAccessDeniedException": Rule(BackendPermissionError, _KMS_DENIED, True),
    "KMSDisabledException": Rule(BackendError, _KMS_UNUSABLE, True),
    "KMSInvalidStateException": Rule(BackendError, _KMS_UNUSABLE, True),
    "KMSNotFoundException": Rule(BackendError, _KMS_UNUSABLE, True),
    "DisabledException": Rule(BackendError, _KMS_UNUSABLE, True),
    "KMSInternalException": Rule(BackendUnavailableError, "AWS KMS failed after botocore's retries"),
    # Throttling and quotas (LimitExceededException: too many versions or secrets, relieved over time).
    "ThrottlingException": Rule(BackendUnavailableError, _THROTTLED),
    "Throttling": Rule(BackendUnavailableError, _THROTTLED),
    "TooManyRequestsException": Rule(BackendUnavailableError, _THROTTLED),
    "RequestLimitExceeded": Rule(BackendUnavailableError, _THROTTLED),
    "RequestThrottled": Rule(BackendUnavailableError, _THROTTLED),
    "RequestThrottledException": Rule(BackendUnavailableError, _THROTTLED),
    "LimitExceededException": Rule(
        BackendUnavailableError, "a Secrets Manager quota is exhausted for now", True
    ),
    # Server side.
    "InternalServiceError": Rule(BackendUnavailableError, _UNAVAILABLE),
    "InternalFailure": Rule(BackendUnavailableError, _UNAVAILABLE),
    "InternalServerError": Rule(BackendUnavailableError, _UNAVAILABLE),
    "ServiceUnavailable": Rule(BackendUnavailableError, _UNAVAILABLE),
    "ServiceUnavailableException": Rule(BackendUnavailableError, _UNAVAILABLE),
    "RequestTimeout": Rule(BackendUnavailableError, _UNAVAILABLE),
    "RequestTimeoutException": Rule(BackendUnavailableError, _UNAVAILABLE),
}

# GetSecretValue: "...because it was marked for deletion"; CreateSecret: "...is already scheduled for deletion";
# moto: "...currently marked deleted".
_DELETION_RE = re.compile(r"(?:marked|scheduled)\s+(?:for\s+)?delet", re.IGNORECASE)
_AWS_MESSAGE_LIMIT = 400


def is_scheduled_for_deletion(code: str, message: str) -> bool:
    """Tell whether an AWS error says the secret is scheduled for deletion (in its recovery window).

    Args:
        code: The AWS error code.
        message: AWS's error message.

    Returns:
        True for an ``InvalidRequestException`` about a deletion.
    """
    return code == "InvalidRequestException" and _DELETION_RE.search(message) is not None


def _subject(action: str, name: str | None) -> str:
    return f"{action} of secret {name!r}" if name else action


def error_for_code(
    code: str, message: str, *, action: str, name: str | None, status: int | None = None, operation: str = ""
) -> MultiCloudStoreError:
    """Build the error for an AWS error code (from an exception, or a ``BatchGetSecretValue`` error entry).

    Args:
        code: The AWS error code.
        message: AWS's message; quoted only for codes whose rule allows it.
        action: What we were doing, for the message (``read``, ``create``, ...).
        name: The secret's backend name, when the call was about one.
        status: The HTTP status, for codes not in the table.
        operation: The AWS operation that failed (``GetSecretValue``, or ``AssumeRole`` when the role could not be
            assumed).

    Returns:
        The error to raise.
    """
    where = f"{_subject(action, name)} on AWS Secrets Manager failed"
    if operation:
        where += f" in {operation}"
    if is_scheduled_for_deletion(code, message):
        # In its recovery window a secret cannot be read or written: for this store it does not exist.
        return SecretNotFoundError(
            f"{where}: {code}: the secret is scheduled for deletion (in its recovery window), so it counts as "
            "missing",
            backend=BACKEND,
        )
    rule = ERROR_TABLE.get(code)
    if rule is None:
        rule = _rule_for_status(status)
    hint = rule.hint
    if operation.startswith("AssumeRole") and rule.error is BackendPermissionError:
        hint = (
            "the source credentials may not assume MULTICLOUD_STORE_AWS_ROLE_ARN (check the role's trust policy "
            "and MULTICLOUD_STORE_AWS_ROLE_EXTERNAL_ID)"
        )
    text = f"{where}: {code or 'unknown error'}"
    if status is not None:
        text += f" (HTTP {status})"
    text += f": {hint}"
    if rule.quote_aws and message:
        quoted = message if len(message) <= _AWS_MESSAGE_LIMIT else message[:_AWS_MESSAGE_LIMIT] + "..."
        text += f". AWS says: {quoted}"
    return rule.error(text, backend=BACKEND)


def _rule_for_status(status: int | None) -> Rule:
    if status is not None and (status >= 500 or status == 429):
        return Rule(BackendUnavailableError, _UNAVAILABLE)
    if status in (401, 403):
        return Rule(BackendPermissionError, _DENIED)
    return Rule(BackendError, "unexpected error from AWS")


def translate(exc: Exception, *, action: str, name: str | None = None) -> MultiCloudStoreError:
    """Map a botocore exception onto the shared hierarchy. Raise the result ``from exc``.

    Args:
        exc: What botocore raised.
        action: What we were doing (``read``, ``create``, ``replace``, ``delete``, ``list``, ...).
        name: The secret's backend name, when the call was about one.

    Returns:
        The error to raise.
    """
    if isinstance(exc, MultiCloudStoreError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return error_for_code(
            str(error.get("Code", "")),
            str(error.get("Message", "")),
            action=action,
            name=name,
            status=status,
            operation=exc.operation_name or "",
        )
    subject = _subject(action, name)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        missing = (
            f" ({exc.kwargs.get('cred_var')} is missing)" if isinstance(exc, PartialCredentialsError) else ""
        )
        return ConfigurationError(
            f"{subject} on AWS Secrets Manager: no usable AWS credentials{missing}; set {CREDENTIAL_VARIABLES}",
            variable="MULTICLOUD_STORE_AWS_ACCESS_KEY_ID",
            backend=BACKEND,
        )
    if isinstance(exc, NoRegionError):
        return ConfigurationError(
            "no AWS region: set MULTICLOUD_STORE_AWS_REGION (or AWS_REGION, or a region in the profile)",
            variable="MULTICLOUD_STORE_AWS_REGION",
            backend=BACKEND,
        )
    if isinstance(exc, ProfileNotFound):
        return ConfigurationError(
            f"the AWS profile {exc.kwargs.get('profile')!r} is not in the shared config files: check "
            "MULTICLOUD_STORE_AWS_PROFILE (or AWS_CONFIG_FILE)",
            variable="MULTICLOUD_STORE_AWS_PROFILE",
            backend=BACKEND,
        )
    if isinstance(exc, (InvalidConfigError, UnknownCredentialError)):
        return ConfigurationError(
            f"{subject}: the AWS configuration is invalid ({type(exc).__name__}); check MULTICLOUD_STORE_AWS_PROFILE "
            "and the shared config files",
            variable="MULTICLOUD_STORE_AWS_PROFILE",
            backend=BACKEND,
        )
    if isinstance(exc, CredentialRetrievalError):
        return BackendPermissionError(
            f"{subject} on AWS Secrets Manager: credentials could not be obtained from provider "
            f"{exc.kwargs.get('provider')!r}",
            backend=BACKEND,
        )
    if isinstance(exc, SSLError):
        return BackendUnavailableError(
            f"{subject} on AWS Secrets Manager: the TLS handshake failed (check MULTICLOUD_STORE_AWS_ENDPOINT_URL "
            "and AWS_CA_BUNDLE)",
            backend=BACKEND,
        )
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        which = "connect" if isinstance(exc, ConnectTimeoutError) else "read"
        return BackendUnavailableError(
            f"{subject} on AWS Secrets Manager timed out ({which} timeout, MULTICLOUD_STORE_AWS_{which.upper()}"
            "_TIMEOUT) after botocore's retries",
            backend=BACKEND,
        )
    if isinstance(exc, (BotocoreConnectionError, HTTPClientError)):
        return BackendUnavailableError(
            f"{subject} on AWS Secrets Manager: cannot reach the endpoint ({type(exc).__name__}) after botocore's "
            "retries",
            backend=BACKEND,
        )
    if isinstance(exc, ParamValidationError):
        # botocore's report names the parameter and the rule, never the value.
        return BackendError(f"{subject}: {_BAD_REQUEST} ({type(exc).__name__})", backend=BACKEND)
    if isinstance(exc, BotoCoreError):
        return BackendError(f"{subject} on AWS Secrets Manager failed: {type(exc).__name__}", backend=BACKEND)
    return BackendError(f"{subject} on AWS Secrets Manager failed: {type(exc).__name__}", backend=BACKEND)
