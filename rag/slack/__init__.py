"""The Slack bot: listeners over the answering API (``bot``) and Block Kit rendering (``format``)."""
