"""Chat messages for webhook endpoints whose format is Microsoft Teams or Slack: the event's
title, the request's (or identity's) app, team and cluster, who acted and why, and a button to
the page (PORTAL_BASE_URL). Incoming webhooks of both take an unsigned JSON POST: the URL itself
is the credential, so these bodies carry no Standard Webhooks signature.

Microsoft Teams: an Adaptive Card wrapped in a message activity, as "Send Adaptive Cards using
an Incoming Webhook" describes (https://learn.microsoft.com/en-us/microsoftteams/platform/
webhooks-and-connectors/how-to/connectors-using, "Send Adaptive Cards using an Incoming
Webhook": `{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": <AdaptiveCard>}]}`);
the Workflows ("Post to a channel when a webhook request is received") trigger takes the same
body, and the same page says Workflows support Adaptive Cards only (not the older MessageCard of
Microsoft 365 Connectors, which are being retired): hence an Adaptive Card. The card uses
TextBlock, FactSet and Action.OpenUrl of Adaptive Cards 1.4 (https://adaptivecards.io/explorer/),
the version Teams renders.

Slack: an incoming webhook message (https://api.slack.com/messaging/webhooks) with Block Kit
`blocks` and a top-level `text` that notifications and screen readers show instead
(https://api.slack.com/reference/block-kit/blocks: header, section with mrkdwn fields, actions
with a link button; a header's plain text is at most 150 characters, a section's text at most
3000, at most 10 fields). mrkdwn needs `&`, `<` and `>` escaped
(https://api.slack.com/reference/surfaces/formatting#escaping).
"""

from __future__ import annotations

from typing import Any

from identities.models import Notification
from notifications.email import absolute_link, subject_of

BUTTON = "Open in the portal"
TEXT_MAX = 2000  # a comment or an error is cut to this in a card (Slack's field limit is 2000)


def facts_of(notification: Notification) -> list[tuple[str, str]]:
    """(label, value) lines under the title: the app, team and cluster, then who acted and the
    comment or error the event carries."""
    subject = notification.identity_request or notification.identity
    facts: list[tuple[str, str]] = []
    if subject is not None:
        facts += [
            ("App", subject.app_name),
            ("Team", subject.team.name),
            ("Cluster", subject.cluster.name),
        ]
    if notification.identity is not None:
        facts.append(("Identity", notification.identity.name))
    data = notification.data
    for key, label in (("actor", "By"), ("comment", "Comment"), ("error", "Error")):
        value = data.get(key)
        if value:
            facts.append((label, str(value)[:TEXT_MAX]))
    findings = data.get("findings") or []
    if findings:
        details = "; ".join(str(finding.get("detail", "")) for finding in findings)
        facts.append(("Findings", details[:TEXT_MAX]))
    return facts


def teams_message(notification: Notification) -> dict[str, Any]:
    """An Adaptive Card for a Teams incoming webhook or Workflows webhook trigger."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": subject_of(notification),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {
                "type": "FactSet",
                "facts": [
                    {"title": label, "value": value} for label, value in facts_of(notification)
                ],
            },
        ],
        "actions": [
            {"type": "Action.OpenUrl", "title": BUTTON, "url": absolute_link(notification)}
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(notification: Notification) -> dict[str, Any]:
    """A Block Kit message for a Slack incoming webhook."""
    title = subject_of(notification)
    link = absolute_link(notification)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
    ]
    facts = facts_of(notification)[:10]
    if facts:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(value)}"}
                    for label, value in facts
                ],
            }
        )
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": BUTTON}, "url": link}
            ],
        }
    )
    return {"text": f"{_slack_escape(title)}: <{link}|{BUTTON}>", "blocks": blocks}
