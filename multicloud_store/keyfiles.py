"""Key files and key rotation reports, shared by the backends that seal their own rows (``local``, ``sql``).

A key file holds a keyring in the text format of `multicloud_store.sealing` (one ``<id>:<base64>`` per line,
newest first). Like ssh with a private key, a key file that group or others may access is refused; files are
written with mode 0600 and replaced atomically, so a crash never leaves half a key file behind.

Nothing here logs, and no message ever contains key material.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from multicloud_store.errors import BackendPermissionError, BackendUnavailableError, ConfigurationError
from multicloud_store.sealing import KeyFormatError, Keyring

__all__ = [
    "RotationReport",
    "create_key_file",
    "missing_key_file_error",
    "read_key_file",
    "write_key_file",
]

# The process or the system is out of descriptors or memory: a resource problem, not a wrong setting.
_FD_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM}


@dataclass
class RotationReport:
    """What a key rotation did.

    Attributes:
        newest_id: The key every row should end under.
        rewritten: Rows re-encrypted under it by this run.
        skipped: Rows another writer changed while this run was at them (the writer's copy was kept).
        failed: Rows that could not be opened (damaged, or sealed with a key that is not configured).
        remaining: Rows still under another key after the run, by key id.
        removable: Configured keys, other than the newest, that no row uses any more: safe to remove.
    """

    newest_id: str
    rewritten: int = 0
    skipped: int = 0
    failed: int = 0
    remaining: dict[str, int] = field(default_factory=dict)
    removable: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every row is under the newest key."""
        return not self.remaining


def _os_error(path: Path, exc: OSError, what: str, variable: str) -> Exception:
    if isinstance(exc, PermissionError):
        return BackendPermissionError(f"cannot {what} the key file {path}: permission denied")
    if exc.errno in _FD_ERRNOS:
        return BackendUnavailableError(f"cannot {what} the key file {path}: {exc.strerror}")
    return ConfigurationError(
        f"cannot {what} the key file {path} ({exc.strerror}); check {variable}", variable=variable
    )


def read_key_file(path: Path, *, variable: str) -> Keyring | None:
    """Read a keyring from a key file, refusing one that group or others may access.

    Args:
        path: The key file.
        variable: The setting that names it (for messages).

    Returns:
        The keyring, or None when the file does not exist.

    Raises:
        ConfigurationError: The file is accessible by group or others, or does not hold a keyring.
        BackendPermissionError: The file cannot be read.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _os_error(path, exc, "read", variable) from exc
    try:
        mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
        if mode & 0o077:
            raise ConfigurationError(
                f"the key file {path} is accessible by group or others (mode {mode:04o}); it must be private to "
                f"this user: run `chmod 600 {path}`",
                variable=variable,
            )
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            data = handle.read()
    except OSError as exc:
        raise _os_error(path, exc, "read", variable) from exc
    finally:
        os.close(descriptor)
    try:
        return Keyring.parse(data.decode("utf-8"))
    except (KeyFormatError, UnicodeDecodeError) as exc:
        detail = str(exc) if isinstance(exc, KeyFormatError) else "not UTF-8 text"
        raise ConfigurationError(
            f"the key file {path} does not hold base64 of 32 bytes or lines of <id>:<base64> ({detail})",
            variable=variable,
        ) from None


def missing_key_file_error(
    database: object, path: Path, *, variable: str, key_variable: str
) -> ConfigurationError:
    """Return the error for a store that holds data while its key file is gone.

    Args:
        database: What holds the data (a path or a URL without credentials).
        path: The missing key file.
        variable: The setting that names the key file.
        key_variable: The setting that gives the key directly.

    Returns:
        The error (the caller raises it).
    """
    return ConfigurationError(
        f"the store {database} holds encrypted data but its key file {path} is missing; restore that file from "
        f"your backup (then `chmod 600 {path}`), or give the key it was created with in {key_variable} or point "
        f"{variable} at it. A new key could not read the existing secrets, so none was created.",
        variable=variable,
    )


def _write_temporary(path: Path, keyring: Keyring) -> Path:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(keyring.dumps().encode())
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _sync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def create_key_file(path: Path, keyring: Keyring, *, variable: str) -> Keyring:
    """Create a key file that must not exist yet (mode 0600, directory 0700); keep the other's if one raced us.

    Args:
        path: The key file.
        keyring: What to write.
        variable: The setting that names it (for messages).

    Returns:
        The keyring the file holds afterwards: ours, or the one another process wrote first.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = _write_temporary(path, keyring)
        try:
            # link() fails if the file exists: never overwrite a key in use.
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
        _sync_directory(path.parent)
    except OSError as exc:
        raise _os_error(path, exc, "create", variable) from exc
    written = read_key_file(path, variable=variable)
    assert written is not None
    return written


def write_key_file(path: Path, keyring: Keyring, *, variable: str) -> None:
    """Replace a key file atomically (write a 0600 temporary file, fsync, rename over the old one).

    Args:
        path: The key file.
        keyring: What it should hold.
        variable: The setting that names it (for messages).
    """
    try:
        temporary = _write_temporary(path, keyring)
        try:
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        _sync_directory(path.parent)
    except OSError as exc:
        raise _os_error(path, exc, "write", variable) from exc
