"""Jira (REST API v2, Cloud and Data Center): one issue per ticket, a comment per later event.

- opened     -> ``POST /rest/api/2/issue``; the Delivery is the issue key and its browse URL
- escalated  -> priority set on the issue (``PUT /rest/api/2/issue/{key}``), then a comment
- resolved, verified -> the CRASHD_JIRA_DONE_TRANSITION transition, then a comment
- regressed  -> the CRASHD_JIRA_REOPEN_TRANSITION transition, then a comment
- regrouped  -> summary set to the ticket's new title (``PUT /rest/api/2/issue/{key}``), a comment
- duplicate  -> an issue link of type "Duplicate" to the surviving ticket's issue
                (``POST /rest/api/2/issueLink``; a 400/404, no such link type, is logged and
                skipped), the CRASHD_JIRA_DONE_TRANSITION, then a comment naming that issue, or
                ``crashd ticket #<id>`` and its crashd page while it has no issue here (no link
                then). A ticket with no issue here has nothing to close: nothing is sent.

State changes come before the comment: they are idempotent (a transition that is no longer
offered is skipped; creating a link that exists adds no second one), so a retry after a failed
comment does not move the issue twice, and a failed state change does not leave a comment that
will be posted again.
Auth: basic, CRASHD_JIRA_USER + CRASHD_JIRA_TOKEN (an API token on Cloud, a password or
token on Data Center).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from triage.tickets.base import (
    Delivery,
    PermanentError,
    TicketBackend,
    duplicate_reference,
    duplicate_target,
    facts,
    group_url,
    headline,
    json_body,
)

log = logging.getLogger(__name__)

PRIORITIES = {"P0": "Highest", "P1": "High"}


class JiraBackend(TicketBackend):
    """Issues in CRASHD_JIRA_PROJECT at CRASHD_JIRA_URL."""

    name = "jira"
    needs_external_key = True

    @property
    def base(self) -> str:
        assert self.settings.jira_url
        return self.settings.jira_url.rstrip("/")

    @property
    def api(self) -> str:
        return f"{self.base}/rest/api/2"

    def owns_url(self, url: str | None) -> bool:
        return url is not None and url.startswith(f"{self.base}/browse/")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """TicketBackend.request with basic auth when CRASHD_JIRA_USER and _TOKEN are set."""
        settings = self.settings
        if settings.jira_user and settings.jira_token:
            kwargs.setdefault("auth", (settings.jira_user, settings.jira_token))
        return super().request(method, url, **kwargs)

    def send(self, notification: dict[str, Any]) -> Delivery:
        """Create the issue or update it; returns its key and URL. Raises Permanent/TemporaryError."""
        event, ticket = notification["event"], notification["ticket"]
        key = ticket.get("external_key")
        if not key and event == "duplicate":
            log.info("jira: ticket %s has no issue to close as a duplicate; nothing sent", ticket.get("id"))
            return Delivery()
        if not key:  # `opened`, or a ticket from before Jira was configured
            delivery = self.create_issue(notification)
            if event == "opened":
                return delivery
            key = delivery.external_key
        else:
            delivery = Delivery(key, ticket.get("external_url") or f"{self.base}/browse/{key}")
        self.update_issue(key, notification)
        self.request("POST", f"{self.api}/issue/{key}/comment", json={"body": self.text(notification)})
        return delivery

    def update_issue(self, key: str, notification: dict[str, Any]) -> None:
        """The event's idempotent changes to the issue (fields, links, transition), before its comment."""
        event, ticket = notification["event"], notification["ticket"]
        if event == "escalated" and ticket.get("priority") in PRIORITIES:
            self.request("PUT", f"{self.api}/issue/{key}",
                         json={"fields": {"priority": {"name": PRIORITIES[ticket['priority']]}}})
        elif event == "regrouped":
            self.request("PUT", f"{self.api}/issue/{key}",
                         json={"fields": {"summary": _summary(ticket.get("title") or "crash")}})
        elif event == "duplicate":
            self.link_duplicate(key, duplicate_target(notification)["external_key"])
        transition = {"resolved": self.settings.jira_done_transition,
                      "verified": self.settings.jira_done_transition,
                      "duplicate": self.settings.jira_done_transition,
                      "regressed": self.settings.jira_reopen_transition}.get(event)
        if transition:
            self.transition(key, transition)

    def link_duplicate(self, key: str, surviving: str | None) -> None:
        """Link issue key as a duplicate of issue surviving ("Duplicate": key duplicates surviving).
        A 400 or 404 (no link type called Duplicate, links turned off) is logged, not an error: the
        comment still names the surviving issue."""
        if not surviving or surviving == key:
            return
        linked = self.request("POST", f"{self.api}/issueLink", ok=(400, 404), json={
            "type": {"name": "Duplicate"}, "inwardIssue": {"key": key}, "outwardIssue": {"key": surviving}})
        if linked.status_code in (400, 404):
            log.warning("jira %s: no Duplicate link to %s (HTTP %s %s); commenting only", key, surviving,
                        linked.status_code, linked.text[:200])

    def create_issue(self, notification: dict[str, Any]) -> Delivery:
        """``POST /rest/api/2/issue``; returns the new key and browse URL."""
        ticket = notification["ticket"]
        fields: dict[str, Any] = {
            "project": {"key": self.settings.jira_project},
            "summary": _summary(ticket.get("title") or "crash"),
            "description": self.text(notification),
            "issuetype": {"name": self.settings.jira_issue_type},
        }
        if ticket.get("priority") in PRIORITIES:
            fields["priority"] = {"name": PRIORITIES[ticket["priority"]]}
        body = json_body(self.request("POST", f"{self.api}/issue", json={"fields": fields}))
        key = str(body.get("key") or "")
        if not key:
            raise PermanentError(f"Jira created an issue but sent no key: {body}")
        return Delivery(key, f"{self.base}/browse/{key}")

    def transition(self, key: str, name: str) -> None:
        """Apply the transition called name (or leading to the status called name). Jira offers
        only the transitions valid from the issue's status, so a missing one means the issue is
        already there (or the workflow has no such step): skipped, not an error."""
        listed = json_body(self.request("GET", f"{self.api}/issue/{key}/transitions")).get("transitions") or []
        wanted = name.casefold()
        for transition in listed:
            target = (transition.get("to") or {}).get("name") or ""
            if wanted in (str(transition.get("name", "")).casefold(), target.casefold()):
                self.request("POST", f"{self.api}/issue/{key}/transitions",
                             json={"transition": {"id": str(transition["id"])}})
                return
        log.info("jira %s: no transition %r offered (have %s); skipped", key, name,
                 [t.get("name") for t in listed])

    def text(self, notification: dict[str, Any]) -> str:
        """Description or comment, Jira wiki markup. The facts sit in a {noformat} block:
        signatures such as ``std::vector<int>::operator[]`` or ``Foo::{lambda}`` would otherwise
        be read as links and macros. A duplicate's comment names the surviving issue first."""
        lines = "\n".join(f"{label}: {value}" for label, value in facts(notification)).replace("{noformat}", "")
        link = group_url(self.settings, notification.get("group") or {})
        text = f"{headline(notification)}\n{{noformat}}\n{lines}\n{{noformat}}" + (f"\ncrashd: {link}" if link else "")
        if notification["event"] == "duplicate":
            surviving = duplicate_target(notification)["external_key"]
            text = f"Duplicate of {surviving or duplicate_reference(self.settings, notification)}\n{text}"
        return text


def _summary(title: str) -> str:
    """Jira refuses summaries over 255 characters or with line breaks."""
    title = " ".join(title.split())
    return title if len(title) <= 255 else title[:254] + "…"
