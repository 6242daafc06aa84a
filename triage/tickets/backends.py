"""Which ticket backends the settings configure (the outbox, storage/outbox.py, delivers to them)."""

from __future__ import annotations

from schemas.settings import Settings
from triage.tickets.base import TicketBackend
from triage.tickets.discord import DiscordBackend
from triage.tickets.github import GitHubBackend
from triage.tickets.jira import JiraBackend
from triage.tickets.security_webhook import SecurityWebhookBackend
from triage.tickets.webhook import WebhookBackend


def configured_backends(settings: Settings) -> list[TicketBackend]:
    """The backends settings configure, in delivery order; none configured is an empty list.

    webhook: webhook_url; jira: jira_url and jira_project; github: github_repo;
    discord: discord_webhook_url; security_webhook: security_webhook_url (restricted tickets only).
    """
    backends: list[TicketBackend] = []
    if settings.webhook_url:
        backends.append(WebhookBackend(settings))
    if settings.jira_url and settings.jira_project:
        backends.append(JiraBackend(settings))
    if settings.github_repo:
        backends.append(GitHubBackend(settings))
    if settings.discord_webhook_url:
        backends.append(DiscordBackend(settings))
    if settings.security_webhook_url:
        backends.append(SecurityWebhookBackend(settings))
    return backends
