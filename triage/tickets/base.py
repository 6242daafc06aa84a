"""TicketBackend: where a ticket's events go (an issue tracker, a chat, a plain webhook).

A backend turns one notification into HTTP requests. The notification is a plain dict::

    {"event": "opened" | "escalated" | "resolved" | "verified" | "regressed" | "regrouped" | "duplicate",
     "ticket": {"id", "priority", "state", "title", "reason_text", "due_at", "fixed_in",
                "external_key", "external_url", ...},
     "group": {"id", "signature", "component", "crash_count", "tester_count", ...},
     "details": {...},
     "duplicate_of": {"id", "external_key", "external_url"}}  # `duplicate` only

``regrouped``: the ticket follows its bug to another group (reprocessing or a merge); its title
is already the new one, details say ``old_signature``/``old_group_id``. ``duplicate``: the
ticket was merged into (or marked a duplicate of) ticket ``details["duplicate_of"]``; the
outbox adds ``duplicate_of``: that ticket's issue in the same backend, key and URL None while
it has none (``duplicate_reference`` then names the crashd ticket).

``send`` returns a Delivery (the tracker's issue key and URL when it has one) or raises
PermanentError (the request can never succeed as it is: the outbox marks it failed) or
TemporaryError (try again later: the outbox keeps it pending with a backoff). Backends are
picked by settings (triage/tickets/backends.py ``configured_backends``), never patched in tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from schemas.settings import Settings

EVENTS = ("opened", "escalated", "resolved", "verified", "regressed", "regrouped", "duplicate")
# A security report's disclosure steps (storage/security.py): only the security webhook hears them.
SECURITY_EVENTS = ("acknowledged", "confirmed", "report_rejected", "fixed", "tester_told", "disclosed")

# Client errors that are worth retrying: 408 Request Timeout, 425 Too Early, 429 Too Many Requests.
RETRYABLE_4XX = {408, 425, 429}


@dataclass(frozen=True)
class Delivery:
    """What a tracker made of a notification: its issue key (Jira ``CRASH-12``, GitHub ``42``)
    and the issue's web page; both None for chats and webhooks."""

    external_key: str | None = None
    external_url: str | None = None


class PermanentError(Exception):
    """The request can never succeed as sent (HTTP 400/401/403/404/422 ..., a bad URL)."""


class TemporaryError(Exception):
    """Worth retrying later (timeout, connection error, 5xx, 429). ``retry_after`` is the
    server's Retry-After in seconds, when it sent one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TicketBackend:
    """One destination for ticket notifications. Subclasses set ``name`` and implement send."""

    name: str = ""
    #: True for trackers (jira, github): events after `opened` go to the issue it created,
    #: so the outbox hands them that issue's key in ``ticket["external_key"]``.
    needs_external_key: bool = False
    #: True when the URL itself is a secret (Discord and generic webhooks carry their token
    #: in the path): error messages then name the host only.
    secret_url: bool = False
    #: True for the security team's webhook: it gets restricted tickets' events, and only those.
    restricted_only: bool = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: httpx.Client | None = None

    def send(self, notification: dict[str, Any]) -> Delivery:
        """Deliver one notification. Raises PermanentError or TemporaryError."""
        raise NotImplementedError

    def owns_url(self, url: str | None) -> bool:
        """True when url is an issue page of this tracker (a ticket linked by hand)."""
        return False

    @property
    def client(self) -> httpx.Client:
        """The HTTP client, created on first use with CRASHD_NOTIFY_TIMEOUT_SECONDS."""
        if self._client is None:
            self._client = httpx.Client(timeout=self.settings.notify_timeout_seconds,
                                        headers={"User-Agent": "crashd"})
        return self._client

    def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def request(self, method: str, url: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        """Send one request; 2xx (and the statuses in ok) return the response.

        Raises TemporaryError for timeouts, connection errors, 5xx, 408/425/429 and PermanentError
        for other 3xx/4xx and unusable URLs.
        """
        where = f"{method} {self._describe(url)}"
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TemporaryError(f"{where}: timed out ({type(exc).__name__})") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise PermanentError(f"{where}: bad URL ({exc})") from exc
        except httpx.TransportError as exc:
            raise TemporaryError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if response.is_success or response.status_code in ok:
            return response
        detail = f"{where}: HTTP {response.status_code} {response.text[:300]}".rstrip()
        if response.status_code >= 500 or response.status_code in RETRYABLE_4XX:
            raise TemporaryError(detail, retry_after_seconds(response))
        delay = self.rate_limit_delay(response)
        if delay is not None:
            raise TemporaryError(detail, delay)
        raise PermanentError(detail)

    def rate_limit_delay(self, response: httpx.Response) -> float | None:
        """Seconds to wait when a 4xx other than 429 is really a rate limit (GitHub's 403)."""
        return None

    def _describe(self, url: str) -> str:
        parsed = httpx.URL(url)
        return f"{parsed.scheme}://{parsed.host}/..." if self.secret_url else f"{parsed.host}{parsed.path}"


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (it is either seconds or an HTTP date), else None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a success response. Raises PermanentError when it is none: the
    request did succeed, so sending it again could create a second issue."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PermanentError(f"HTTP {response.status_code} but no JSON: {response.text[:200]!r}") from exc
    if not isinstance(body, dict):
        raise PermanentError(f"HTTP {response.status_code} but not a JSON object: {response.text[:200]!r}")
    return body


# -- words shared by the backends -----------------------------------------------------------


def group_url(settings: Settings, group: dict[str, Any]) -> str | None:
    """The crashd page of the group (``<CRASHD_PUBLIC_URL>/groups/<id>``), None without public_url."""
    if not settings.public_url or group.get("id") is None:
        return None
    return f"{settings.public_url.rstrip('/')}/groups/{group['id']}"


def ticket_url(settings: Settings, ticket_id: Any) -> str | None:
    """The crashd page of a ticket (``<CRASHD_PUBLIC_URL>/tickets/<id>``), None without public_url."""
    if not settings.public_url or ticket_id is None:
        return None
    return f"{settings.public_url.rstrip('/')}/tickets/{ticket_id}"


def duplicate_target(notification: dict[str, Any]) -> dict[str, Any]:
    """The ticket a `duplicate` event points at: ``{"id", "external_key", "external_url"}`` as the
    outbox resolved it for this backend (key and URL None when that ticket has no issue here yet)."""
    target = {"external_key": None, "external_url": None, **(notification.get("duplicate_of") or {})}
    if target.get("id") is None:
        target["id"] = (notification.get("details") or {}).get("duplicate_of")
    return target


def duplicate_reference(settings: Settings, notification: dict[str, Any]) -> str:
    """``crashd ticket #5 (<CRASHD_PUBLIC_URL>/tickets/5)``: the fallback when the surviving
    ticket's issue in this tracker is not known."""
    target_id = duplicate_target(notification)["id"]
    link = ticket_url(settings, target_id)
    return f"crashd ticket #{target_id}" + (f" ({link})" if link else "")


def headline(notification: dict[str, Any]) -> str:
    """One line saying what happened: ``Escalated to P0: <title>``."""
    ticket = notification["ticket"]
    title, priority, fixed_in = ticket.get("title") or "crash", ticket.get("priority") or "", ticket.get("fixed_in")
    event, details = notification["event"], notification.get("details") or {}
    if event == "opened":
        return f"New {priority + ' ' if priority else ''}crash ticket: {title}"
    if event == "escalated":
        return f"Escalated to {priority}: {title}"
    if event == "resolved":
        return f"Resolved{f' in {fixed_in}' if fixed_in else ''}: {title}"
    if event == "verified":
        return f"Verified fixed{f' in {fixed_in}' if fixed_in else ''}: {title}"
    if event == "regressed":
        return f"Regressed{f' after the fix in {fixed_in}' if fixed_in else ''}: {title}"
    if event == "regrouped":
        old = details.get("old_signature")
        return f"Regrouped: {title}" + (f" (was {old})" if old else "")
    if event == "duplicate":
        target_id = duplicate_target(notification)["id"]
        return f"Duplicate of ticket #{target_id}: {title}" if target_id is not None else f"Duplicate: {title}"
    return f"{event}: {title}"


# Labels of event details whose key alone reads badly ("Old group id"); values shown as "#N"
# are ticket ids. "reason" is not "Reason": that label is the ticket's reason_text.
DETAIL_LABELS = {"reason": "Cause", "old_signature": "Previous signature", "old_group_id": "Previous group",
                 "new_group_id": "New group", "new_signature": "New signature",
                 "merged_ticket_id": "Merged ticket", "duplicate_of": "Duplicate of"}
TICKET_ID_DETAILS = ("merged_ticket_id", "duplicate_of")


def facts(notification: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs about the ticket and its group, then the event's details."""
    ticket, group = notification["ticket"], notification.get("group") or {}
    pairs = [("Signature", group.get("signature")), ("Component", group.get("component")),
             ("Reason", ticket.get("reason_text") or group.get("reason_text")),
             ("Priority", ticket.get("priority")), ("State", ticket.get("state"))]
    if group.get("crash_count") is not None:
        pairs.append(("Crashes", f"{group.get('crash_count')} from {group.get('tester_count') or 0} testers"))
    pairs += [("Due", _when(ticket.get("due_at"))), ("Fixed in", ticket.get("fixed_in")), ("Rule", ticket.get("rule"))]
    for key, value in (notification.get("details") or {}).items():
        if (key, value) in (("new_signature", group.get("signature")), ("new_group_id", group.get("id"))):
            continue  # the group shown above is the new one
        label = DETAIL_LABELS.get(key) or key.replace("_", " ").capitalize()
        pairs.append((label, f"#{value}" if key in TICKET_ID_DETAILS and value is not None else _plain(value)))
    return [(label, str(value)) for label, value in pairs if value not in (None, "", [], {})]


def _when(value: Any) -> str | None:
    """An ISO timestamp as ``2026-11-21 12:00 UTC``."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value
