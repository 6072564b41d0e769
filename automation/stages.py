"""A stage's settings as Chalice gives them to the functions: .chalice/config.json, merged the way Chalice does."""
from __future__ import annotations

import json
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = PROJECT_ROOT / ".chalice" / "config.json"


class UnknownStage(ValueError):
    pass


def load_config() -> dict:
    return json.loads(CONFIG_FILE.read_text())


def stage_names() -> list[str]:
    return sorted(load_config()["stages"])


def function_environment(stage: str, function: str = "advance_jobs") -> dict[str, str]:
    """Top level, then stage, then the stage's per-function variables (Chalice's order; it ignores
    top-level per-function variables)."""
    config = load_config()
    if stage not in config.get("stages", {}):
        raise UnknownStage(f"no stage {stage!r} in {CONFIG_FILE.name}; stages: {', '.join(stage_names())}")
    stage_config = config["stages"][stage]
    env = dict(config.get("environment_variables", {}))
    env.update(stage_config.get("environment_variables", {}))
    env.update(stage_config.get("lambda_functions", {}).get(function, {}).get("environment_variables", {}))
    return env


def function_setting(stage: str, function: str, key: str, default=None):
    config = load_config()
    stage_config = config["stages"][stage]
    for scope in (stage_config.get("lambda_functions", {}).get(function, {}), stage_config,
                  config.get("lambda_functions", {}).get(function, {}), config):
        if key in scope:
            return scope[key]
    return default
