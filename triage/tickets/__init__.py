"""Ticket notifications: backends (webhook, Jira, GitHub, Discord) and the outbox that
delivers ticket events to them with retries. docs/notifications.md describes both."""
