import os

# No test may reach a real AWS endpoint or read a developer's AWS profile.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

# Property-based tests (tests/property, tests/security) are deterministic by default, so CI and every
# machine run the same examples; HYPOTHESIS_PROFILE=explore draws new ones (and keeps failures in .hypothesis/).
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
