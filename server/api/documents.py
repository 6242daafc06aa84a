"""How the JSON API writes what it reads: ``jsonable`` turns every datetime (aware UTC) and
date into an ISO 8601 string. A leaf of server/api: it imports nothing of its package.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any


def jsonable(value: Any) -> Any:
    """value with every datetime (aware UTC) and date as an ISO 8601 string, recursively."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value
