"""Keeping credentials out of messages: every error about object storage goes through here.

Storage errors from botocore/aiohttp/gcsfs can quote request details. We never print the
library's text as is: :func:`storage_error` maps the exception to a reason of our own words and
adds the library's first line only after scrubbing every credential value we know of (the
``--storage-options`` values and the standard credential environment variables).
"""

from __future__ import annotations

import os
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.sources.spec import safe_url

_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
)


def secret_values(storage_options: dict[str, Any] | None) -> list[str]:
    """Strings that must never appear in output: option values and credential variables."""
    values: list[str] = []

    def collect(obj: Any) -> None:
        if isinstance(obj, dict):
            for v in obj.values():
                collect(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                collect(v)
        elif isinstance(obj, str) and len(obj) >= 4:
            values.append(obj)

    collect(storage_options or {})
    values += [os.environ[name] for name in _SECRET_ENV if len(os.environ.get(name, "")) >= 4]
    return sorted(set(values), key=len, reverse=True)


def scrub(text: str, storage_options: dict[str, Any] | None = None) -> str:
    """``text`` with every known secret replaced by ``***``."""
    for value in secret_values(storage_options):
        text = text.replace(value, "***")
    return text


def _reason(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc)
    if isinstance(exc, PermissionError) or any(
        s in text for s in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId", "Forbidden", "403")
    ):
        return (
            "access denied: check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
            "~/.aws/credentials, GOOGLE_APPLICATION_CREDENTIALS or --storage-options)"
        )
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text or "NoSuchKey" in text:
        return "not found (no such bucket, prefix or object)"
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) and "connect" in text.lower():
        return "cannot connect to the storage endpoint (AWS_ENDPOINT_URL / endpoint_url)"
    return name


def storage_error(
    url: str, exc: BaseException, storage_options: dict[str, Any] | None = None, doing: str = "read"
) -> UserError:
    """A one-line :class:`UserError` naming ``url`` for a storage failure, secrets scrubbed."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = scrub(first, storage_options)[:200]
    reason = _reason(exc)
    extra = f" ({detail})" if detail and detail not in reason else ""
    return UserError(f"{safe_url(url)}: cannot {doing}: {reason}{extra}")
