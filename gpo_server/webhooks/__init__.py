"""Signed batch progress and completion events POSTed to a batch's callback_uri (docs/WEBHOOKS.md)."""
