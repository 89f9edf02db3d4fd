"""constraints.txt, the exact versions scripts/setup.sh installs, agrees with what pyproject.toml asks for."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_constraints_pin_every_dependency_inside_pyprojects_range() -> None:
    pins = _pins()
    wanted = [Requirement(r) for r in importlib.metadata.requires("skinlesion")]
    assert wanted, "skinlesion is not installed (scripts/setup.sh installs it, editable)"
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in constraints.txt: run scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}: run scripts/lock.sh")
