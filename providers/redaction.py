"""Keep credentials out of log records, whoever logs them (PyGithub, python-gitlab, httpx).

SDKs log request lines and URLs at DEBUG and INFO. A token can ride in a header, or in a
query string (GitHub's codeload `?token=` download links). Logger filters only see records
created on their own logger, not a child's, so instead we wrap the log record factory:
every record, from any logger, is masked the moment it is created.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

_QUERY_TOKEN = re.compile(r"(?i)((?:private_|access_|job_)?token=)[^&\s'\"]+")
_CREDENTIAL_HEADER = re.compile(
    r"(?i)((?:authorization|private-token|job-token)[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:token|bearer|basic)\s+)?)[^\s,;)'\"]+"
)
"""A credential header that a forge's error body or a proxy echoes back
(`Authorization: token glpat-…`), masked whether or not the token is a registered one."""
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@")
"""The user part of a URL (`https://TOKEN@host`, `https://user:password@host`): a
credential wherever it is written (a pip_url, an index URL, a remote)."""
_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def without_userinfo(text: str) -> str:
    """`text` with the user part of every URL in it replaced by `***`."""
    return _URL_USERINFO.sub(r"\1***@", text)


def redact(text: str, secrets: set[str] | frozenset[str] | None = None) -> str:
    """`text` with each secret, each `token=` query value, each echoed credential header
    and the user part of each URL replaced by `***`."""
    for secret in _secrets if secrets is None else secrets:
        if secret:
            text = text.replace(secret, "***")
    text = without_userinfo(text)
    return _CREDENTIAL_HEADER.sub(r"\1***", _QUERY_TOKEN.sub(r"\1***", text))


def protect_logs(*secrets: str | None) -> None:
    """Register secrets to mask in every log record from now on."""
    global _installed
    with _lock:
        _secrets.update(s for s in secrets if s and len(s) >= 4)
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                message = str(record.msg)
            masked = redact(message)
            if masked != message:
                record.msg, record.args = masked, None
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
