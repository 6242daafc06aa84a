"""Keep secrets that clients put in URLs out of the logs (docs/deploy.md, "Logs").

Breakpad and Crashpad clients can only send their ingest key in the upload URL
(``/submit?key=...``, ``/api/1/minidump/?sentry_key=...``) and symupload v2 sends an API token
as ``?key=``, so uvicorn's access log would write every one of them down:
``127.0.0.1:50412 - "POST /submit?key=3f9a... HTTP/1.1" 200``. ``crashd serve`` puts
RedactSecrets on every handler (uvicorn's and the root logger's), so the line reads
``"POST /submit?key=[redacted] HTTP/1.1"``.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from uvicorn.config import LOGGING_CONFIG

SECRET_PARAMS = ("sentry_key", "key", "token")
REDACTED = "[redacted]"
# name=value where name is a whole word (so `monkey=` and `token_type=` stay): in a query
# string (`?key=`, `&key=`) or a logged header (`Sentry sentry_key=abc, sentry_version=7`); the
# value ends where the parameter, the URL or the quoted request line does
_SECRET_VALUE = re.compile(r"((?<![\w.-])(?:%s)=)[^&;,#\s\"']+" % "|".join(SECRET_PARAMS), re.IGNORECASE)


def redact(text: str) -> str:
    """text with the values of ``sentry_key``, ``key`` and ``token`` query parameters replaced
    by ``[redacted]``."""
    return _SECRET_VALUE.sub(r"\1" + REDACTED, text) if "=" in text else text


class RedactSecrets(logging.Filter):
    """A handler filter that redacts secret query values in a record's string arguments (so
    uvicorn's access formatter still gets the five arguments of the access line), else in the
    whole message, and in its traceback text. It never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: let the handler report it
            return True
        if redact(message) != message:  # in the format (`"?key=%s", key`) or a URL object argument
            record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put RedactSecrets on every handler of logger (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with RedactSecrets on each of its handlers."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": RedactSecrets}
    for handler in config["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "redact_secrets"]
    return config
