"""GitHub issues in CRASHD_GITHUB_REPO: one issue per ticket, a comment per later event.

- opened     -> ``POST /repos/{repo}/issues`` (title, markdown body, labels [priority, component]);
                the Delivery is the issue number and its html_url
- escalated  -> the new priority label added, the other priority label removed, a comment
- resolved   -> a comment (the issue stays open until the fix is verified)
- verified   -> ``PATCH`` state closed (completed), a comment
- regressed  -> ``PATCH`` state open (reopened), a comment
- regrouped  -> ``PATCH`` the title (the ticket's new title), a comment (old and new signature)
- duplicate  -> ``PATCH`` state closed (``state_reason: duplicate``; GitHub Enterprise versions
                that refuse that reason with 422 get ``not_planned``), then a comment that starts
                ``Duplicate of #<n>`` (GitHub marks the issue a duplicate of issue n) and links
                it; when the surviving ticket has no issue here yet: ``Duplicate of crashd ticket
                #<id>`` and its crashd page. A ticket with no issue here has nothing to close:
                nothing is sent.

State, title and label changes come before the comment: they are idempotent, so a retry after
a failed comment changes nothing twice. Auth: ``Authorization: Bearer CRASHD_GITHUB_TOKEN``
(a fine-grained token with Issues read/write). Labels that do not exist yet are created by
GitHub when the issue is.
"""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

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
    ticket_url,
)

log = logging.getLogger(__name__)

PRIORITY_LABELS = ("P0", "P1")
CODE_LABELS = ("Signature", "Reason", "Previous signature", "New signature")  # facts shown as code spans


class GitHubBackend(TicketBackend):
    """Issues of CRASHD_GITHUB_REPO (``owner/name``) through CRASHD_GITHUB_API_URL."""

    name = "github"
    needs_external_key = True

    @property
    def repo_api(self) -> str:
        return f"{self.settings.github_api_url.rstrip('/')}/repos/{self.settings.github_repo}"

    def owns_url(self, url: str | None) -> bool:
        return url is not None and f"/{self.settings.github_repo}/issues/" in url

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """TicketBackend.request with GitHub's media type, API version and the token."""
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if self.settings.github_token:
            headers["Authorization"] = f"Bearer {self.settings.github_token}"
        return super().request(method, url, headers=headers, **kwargs)

    def rate_limit_delay(self, response: httpx.Response) -> float | None:
        """GitHub answers some rate limits with 403, not 429: the secondary limit sends
        Retry-After, the primary one ``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset``
        (epoch seconds). Other 403s (no access to the repository) are permanent."""
        if response.status_code != 403:
            return None
        if "Retry-After" in response.headers:
            try:
                return max(0.0, float(response.headers["Retry-After"]))
            except ValueError:
                return 60.0
        if response.headers.get("x-ratelimit-remaining") == "0":
            try:
                reset = float(response.headers.get("x-ratelimit-reset", "0"))
            except ValueError:
                return 60.0
            return max(1.0, reset - _epoch(response.headers.get("Date")))
        return None

    def send(self, notification: dict[str, Any]) -> Delivery:
        """Create the issue or update it; returns its number and URL. Raises Permanent/TemporaryError."""
        event, ticket = notification["event"], notification["ticket"]
        number = ticket.get("external_key")
        if not number and event == "duplicate":
            log.info("github: ticket %s has no issue to close as a duplicate; nothing sent", ticket.get("id"))
            return Delivery()
        if not number:  # `opened`, or a ticket from before GitHub was configured
            delivery = self.create_issue(notification)
            if event == "opened":
                return delivery
            number = delivery.external_key
        else:
            delivery = Delivery(str(number), ticket.get("external_url"))
        issue = f"{self.repo_api}/issues/{number}"
        self.update_issue(issue, notification)
        self.request("POST", f"{issue}/comments", json={"body": self.markdown(notification)})
        return delivery

    def update_issue(self, issue: str, notification: dict[str, Any]) -> None:
        """The event's idempotent changes to the issue (labels, state, title), before its comment."""
        event, ticket = notification["event"], notification["ticket"]
        if event == "escalated" and ticket.get("priority") in PRIORITY_LABELS:
            self.request("POST", f"{issue}/labels", json={"labels": [ticket["priority"]]})
            for label in PRIORITY_LABELS:
                if label != ticket["priority"]:  # 404: the issue did not have it
                    self.request("DELETE", f"{issue}/labels/{quote(label, safe='')}", ok=(404,))
        elif event == "verified":
            self.request("PATCH", issue, json={"state": "closed", "state_reason": "completed"})
        elif event == "regressed":
            self.request("PATCH", issue, json={"state": "open", "state_reason": "reopened"})
        elif event == "regrouped":
            self.request("PATCH", issue, json={"title": (ticket.get("title") or "crash")[:256]})
        elif event == "duplicate":
            # `duplicate` is a state_reason of the issues API (github/rest-api-description,
            # operation issues/update); an older GitHub Enterprise Server answers 422 to it.
            closed = self.request("PATCH", issue, json={"state": "closed", "state_reason": "duplicate"}, ok=(422,))
            if closed.status_code == 422:
                self.request("PATCH", issue, json={"state": "closed", "state_reason": "not_planned"})

    def create_issue(self, notification: dict[str, Any]) -> Delivery:
        """``POST /repos/{repo}/issues``; returns the number and html_url."""
        ticket, group = notification["ticket"], notification.get("group") or {}
        labels = [label for label in (ticket.get("priority"), group.get("component")) if label]
        body = json_body(self.request("POST", f"{self.repo_api}/issues", json={
            "title": (ticket.get("title") or "crash")[:256], "body": self.markdown(notification), "labels": labels}))
        if body.get("number") is None:
            raise PermanentError(f"GitHub created an issue but sent no number: {str(body)[:200]}")
        return Delivery(str(body["number"]), body.get("html_url"))

    def markdown(self, notification: dict[str, Any]) -> str:
        """Issue body or comment: the headline, the facts as a list, the crashd link. A duplicate's
        comment starts with ``Duplicate of #<n>`` alone on its line: the words GitHub reads."""
        lines = [f"**{headline(notification)}**", ""]
        if notification["event"] == "duplicate":
            lines = [self.duplicate_line(notification), ""] + lines
        for label, value in facts(notification):
            lines.append(f"- **{label}:** {_code(value) if label in CODE_LABELS else value}")
        link = group_url(self.settings, notification.get("group") or {})
        if link:
            lines += ["", f"[Crash group in crashd]({link})"]
        return "\n".join(lines)

    def duplicate_line(self, notification: dict[str, Any]) -> str:
        """``Duplicate of #12`` and the surviving issue's link, or, while the surviving ticket has
        no issue in this repository, ``Duplicate of crashd ticket #5 (<its crashd page>)``."""
        target = duplicate_target(notification)
        number, issue_url = target["external_key"], target["external_url"]
        if not number:
            return f"Duplicate of {duplicate_reference(self.settings, notification)}"
        links = [f"[issue #{number}]({issue_url})"] if issue_url else []
        crashd = ticket_url(self.settings, target["id"])
        if crashd:
            links.append(f"[crashd ticket #{target['id']}]({crashd})")
        return f"Duplicate of #{number}" + (f"\n\nFollow the bug in: {', '.join(links)}" if links else "")


def _code(text: str) -> str:
    """A Markdown code span that survives backticks inside (``a`b`` -> ``` `` a`b `` ```)."""
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def _epoch(date: str | None) -> float:
    """The server's Date header (else the local clock) as epoch seconds: x-ratelimit-reset is
    the server's clock."""
    if date:
        try:
            return parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()
