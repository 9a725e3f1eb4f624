"""Package list only; everything else is declared in setup.cfg.

setup.cfg's find: looks in one folder, and the agent's packages live in agent/ (their own
distribution, ``pip install ./agent``). The server ships them too, so the event schema, the PII
detectors and the fingerprints exist in one place.
"""

from setuptools import find_packages, setup

AGENT_PACKAGES = find_packages("agent", include=["canhgac_agent", "canhgac_agent.*",
                                                  "canhgac_common", "canhgac_common.*"])

setup(
    packages=find_packages(include=["service", "service.*"]) + AGENT_PACKAGES,
    package_dir={name: "agent/" + name.replace(".", "/") for name in AGENT_PACKAGES},
)
