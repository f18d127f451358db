"""The notification inbox: notifications delivered to users, read and marked by each user alone."""
from .service import InboxPage, Notification, NotificationService

__all__ = ["InboxPage", "Notification", "NotificationService"]
