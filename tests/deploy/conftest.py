import fcntl
import json
import os
import tempfile
from pathlib import Path

import pytest

from automation import deployment, stages

LOCK = Path(tempfile.gettempdir()) / "ami-distributor-chalice-package.lock"


@pytest.fixture(scope="session")
def packaged(tmp_path_factory):
    """stage -> (StageSpec, sam.json as a dict): `python -m automation package`'s work, once per stage."""
    cache = {}

    def get(stage_name: str, directory: bool = False):
        if stage_name not in cache:
            stage = deployment.StageSpec.load(stage_name)
            out = tmp_path_factory.mktemp(f"package-{stage_name}")
            # chalice caches the dependency zip in .chalice/deployments: one builder at a time across workers
            with LOCK.open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                sam_file = deployment.package(stage, out)
            cache[stage_name] = (stage, json.loads(sam_file.read_text()), out)
        stage, sam, out = cache[stage_name]
        return out if directory else (stage, sam)

    return get


STAGES = stages.stage_names()
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
