"""Discord: one webhook message per event (``POST CRASHD_DISCORD_WEBHOOK_URL``).

The message is ``{"content", "embeds": [one embed], "allowed_mentions": {"parse": []}}``.
Discord's limits (a longer message is refused with 400): content 2000 characters, embed title
256, description 4096, field name 256 and value 1024, 25 fields, 6000 characters per embed.
``allowed_mentions`` is empty so that a crash title containing ``@everyone`` pings no one.
Discord answers 204 No Content, and 429 with Retry-After when a webhook posts too often.
A `regrouped` message says the old signature; a `duplicate` one says which ticket it is a
duplicate of, with that ticket's tracker issue (else its crashd page) in the embed.
"""

from __future__ import annotations

from typing import Any

from schemas.settings import Settings
from triage.tickets.base import Delivery, TicketBackend, duplicate_reference, duplicate_target, facts, group_url, headline

CONTENT_MAX = 2000
EMBED_MAX = 6000
COLOURS = {"opened": 0xE67E22, "escalated": 0xE74C3C, "resolved": 0x3498DB, "verified": 0x2ECC71,
           "regressed": 0x9B59B6, "regrouped": 0x1ABC9C, "duplicate": 0x7F8C8D}


class DiscordBackend(TicketBackend):
    """Chat messages in the channel of CRASHD_DISCORD_WEBHOOK_URL."""

    name = "discord"
    secret_url = True  # https://discord.com/api/webhooks/<id>/<token>

    def send(self, notification: dict[str, Any]) -> Delivery:
        """Post the message. Raises PermanentError / TemporaryError."""
        assert self.settings.discord_webhook_url
        self.request("POST", self.settings.discord_webhook_url, json=self.message(notification))
        return Delivery()

    def message(self, notification: dict[str, Any]) -> dict[str, Any]:
        """The webhook body for one notification."""
        ticket = notification["ticket"]
        link = group_url(self.settings, notification.get("group") or {})
        content = f"**{headline(notification)}**" + (f"\n<{link}>" if link else "")
        embed: dict[str, Any] = {
            "title": _cut(ticket.get("title") or "crash", 256),
            "color": COLOURS.get(notification["event"], 0x95A5A6),
        }
        # 1200: room for the description below (two issue URLs of at most 500 characters, and words)
        embed["fields"] = _fields(facts(notification), EMBED_MAX - len(embed["title"]) - 1200)
        if link:
            embed["url"] = link
        description = [f"Tracker: {ticket['external_url']}"] if ticket.get("external_url") else []
        if notification["event"] == "duplicate":
            description.append(f"Duplicate of {_surviving(self.settings, notification)}")
        if description:
            embed["description"] = _cut("\n".join(description), 4096)
        return {"content": _cut(content, CONTENT_MAX), "embeds": [embed], "allowed_mentions": {"parse": []}}


def _surviving(settings: Settings, notification: dict[str, Any]) -> str:
    """The ticket a duplicate points at: ``ticket #5: <its tracker issue>``, else ``crashd ticket #5
    (<its crashd page>)``."""
    target = duplicate_target(notification)
    if target["external_url"]:
        return f"ticket #{target['id']}: {target['external_url']}"
    return duplicate_reference(settings, notification)


def _fields(pairs: list[tuple[str, str]], budget: int) -> list[dict[str, Any]]:
    """Embed fields for the (label, value) pairs, at most 25 and budget characters in all."""
    fields = []
    for label, value in pairs[:25]:
        name, text = _cut(label, 256), _cut(value, 1024)
        budget -= len(name) + len(text)
        if budget < 0:
            break
        fields.append({"name": name, "value": text, "inline": len(text) <= 40})
    return fields


def _cut(text: str, limit: int) -> str:
    """text shortened to limit characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
