"""The fidelity layer's behaviours, in the order they see a request (throttling first, as in AWS)."""
from __future__ import annotations


def all_extensions() -> list:
    from .ec2_images import ImageFidelity
    from .eventbridge import EventBridgeFidelity
    from .iam_access import IamAccess
    from .kms_ebs import KmsEbsSettings
    from .mgn import MgnService
    from .publishing import PublishingFidelity
    from .sqs_clock import SqsClock
    from .speedups import MotoSpeedups
    from .sqs_move_tasks import MessageMoveTasks
    from .throttling import Throttling

    return [Throttling(), ImageFidelity(), MgnService(), MessageMoveTasks(), SqsClock(), EventBridgeFidelity(),
            IamAccess(), KmsEbsSettings(), PublishingFidelity(), MotoSpeedups()]
