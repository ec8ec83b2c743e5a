"""Test configuration: hypothesis profiles chosen by HYPOTHESIS_PROFILE.

- ``ci``: a fixed number of examples, no deadline, derandomized (used by .ci/run).
- ``dev`` (default): fewer examples for a quick local loop.
- ``thorough``: many examples, for a long soak before a release.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
