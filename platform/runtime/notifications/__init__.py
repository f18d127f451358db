"""The notification inbox: notifications delivered to users, read and marked by each user alone."""
from .service import Delivery, InboxPage, Notification, NotificationService

__all__ = ["Delivery", "InboxPage", "Notification", "NotificationService"]
