"""Generic JSON webhook: ``POST CRASHD_WEBHOOK_URL`` with the notification as it is.

Every event, `regrouped` and `duplicate` included, is one POST of ``{"event", "ticket", "group",
"details"}``; a `duplicate` adds ``"duplicate_of": {"id", "external_key", "external_url"}`` (the
surviving ticket and its issue, as the ticket's own ``external_key`` is: the ticket's row).
"""

from __future__ import annotations

from typing import Any

from triage.tickets.base import Delivery, TicketBackend


class WebhookBackend(TicketBackend):
    """Posts ``{"event", "ticket", "group", "details"}`` (and ``duplicate_of``) for every event; any
    2xx is success."""

    name = "webhook"
    secret_url = True  # hook URLs often carry their token

    def send(self, notification: dict[str, Any]) -> Delivery:
        """POST the notification. Raises PermanentError / TemporaryError (see TicketBackend.request)."""
        assert self.settings.webhook_url
        body = {key: notification.get(key) or {} for key in ("ticket", "group", "details")}
        if notification.get("duplicate_of"):
            body["duplicate_of"] = notification["duplicate_of"]
        self.request("POST", self.settings.webhook_url, json={"event": notification["event"], **body})
        return Delivery()
