"""Generic JSON webhook: ``POST CRASHD_WEBHOOK_URL`` with the notification as it is."""

from __future__ import annotations

from typing import Any

from triage.tickets.base import Delivery, TicketBackend


class WebhookBackend(TicketBackend):
    """Posts ``{"event", "ticket", "group", "details"}`` for every event; any 2xx is success."""

    name = "webhook"
    secret_url = True  # hook URLs often carry their token

    def send(self, notification: dict[str, Any]) -> Delivery:
        """POST the notification. Raises PermanentError / TemporaryError (see TicketBackend.request)."""
        assert self.settings.webhook_url
        body = {key: notification.get(key) or {} for key in ("ticket", "group", "details")}
        self.request("POST", self.settings.webhook_url, json={"event": notification["event"], **body})
        return Delivery()
