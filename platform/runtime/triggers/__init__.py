"""Record triggers: on create, update or stage change, notify, set fields, create a task or call a webhook."""
from . import webhooks  # noqa: F401  (registers the webhook delivery job handler)
from .kind import MAX_DEPTH, RecordTriggers
from .webhooks import WEBHOOK_JOB, WebhookFailed, signature

__all__ = ["MAX_DEPTH", "WEBHOOK_JOB", "RecordTriggers", "WebhookFailed", "signature"]
