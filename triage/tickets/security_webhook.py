"""The security team's webhook: ``POST CRASHD_SECURITY_WEBHOOK_URL`` with the full text of a
restricted security ticket's events (docs/security-reports.md). It hears nothing of other
tickets, and the other backends hear at most "restricted security report #N received"
(storage/outbox.py decides who gets what)."""

from __future__ import annotations

from typing import Any

from triage.tickets.base import Delivery, TicketBackend


class SecurityWebhookBackend(TicketBackend):
    """Posts ``{"event", "ticket", "report", "details"}`` for each event of a restricted ticket."""

    name = "security_webhook"
    secret_url = True
    restricted_only = True  # the outbox writes rows for restricted tickets only

    def send(self, notification: dict[str, Any]) -> Delivery:
        """POST the notification. Raises PermanentError / TemporaryError (TicketBackend.request)."""
        assert self.settings.security_webhook_url
        body = {key: notification.get(key) or {} for key in ("ticket", "report", "details")}
        self.request("POST", self.settings.security_webhook_url, json={"event": notification["event"], **body})
        return Delivery()
