"""The fidelity layer patches moto's internals, so it only runs on the moto it was written for.

A different moto may rename the methods we wrap and silently turn the sandbox back into plain
moto, which is exactly the failure this package exists to prevent: refuse to import instead.
"""
from importlib.metadata import version

PINNED_MOTO_VERSION = "5.2.5"


class MotoVersionMismatch(ImportError):
    pass


def check_moto_version(installed: str | None = None) -> None:
    installed = installed or version("moto")
    if installed != PINNED_MOTO_VERSION:
        raise MotoVersionMismatch(
            f"automation.sandbox extends moto=={PINNED_MOTO_VERSION} but moto=={installed} is "
            f"installed; install requirements-dev.txt (or re-check every patch in "
            f"automation/sandbox/ against the new moto before bumping the pin)"
        )
