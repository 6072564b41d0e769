"""Local AWS for ami-distributor: moto plus the behaviour moto lacks (see core.py)."""
import os

from ._pin import check_moto_version

check_moto_version()
# moto loads ~1,300 public AMIs per region unless told not to; nothing here wants them.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

from .clock import RealClock, VirtualClock  # noqa: E402
from .core import Directory, PublishedEvent, Sandbox  # noqa: E402
from .settings import DEFAULT_REGION, SOURCE_ACCOUNT, SandboxSettings  # noqa: E402

__all__ = [
    "DEFAULT_REGION", "Directory", "PublishedEvent", "RealClock", "Sandbox", "SandboxSettings",
    "SOURCE_ACCOUNT", "VirtualClock",
]
