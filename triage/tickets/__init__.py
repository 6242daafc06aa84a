"""Tickets: the state machine (transitions.py) and the notification backends (webhook, Jira,
GitHub, Discord). Their SQL is storage/: tickets.py applies the transitions, outbox.py delivers
ticket events to the backends with retries. docs/notifications.md describes both."""
