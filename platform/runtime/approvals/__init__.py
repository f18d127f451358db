"""Approval processes: records submitted, decided step by step, locked while pending."""
from .errors import AlreadyPending, NoApprover, NoProcess, RecordLocked
from .service import ApprovalAction, ApprovalProcesses, ApprovalRequest

__all__ = ["AlreadyPending", "ApprovalAction", "ApprovalProcesses", "ApprovalRequest", "NoApprover", "NoProcess", "RecordLocked"]
