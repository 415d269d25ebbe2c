"""The packaging promises: constraints.txt is a full lock of what the tests run with, and
pyproject.toml keeps compatible ranges with upper bounds on the APIs that break.

Fast and offline: reads constraints.txt, pyproject.toml, the Makefile and the installed
distributions' metadata (importlib.metadata). `make lock` regenerates constraints.txt.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "a3c-course"
TORCH = "2.13.0"  # the machine rule: always the 2.13.0 CPU wheel
BREAKING = ("gymnasium", "ale-py", "numpy", "torch")  # the APIs that must have an upper bound
OPTIONAL_EXTRAS = ("ray", "tensorboard", "lab")  # checked when installed, as make test does


def _constraint_lines() -> list[tuple[int, str]]:
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    return [
        (number, line.strip())
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.fixture(scope="module")
def pins() -> dict[str, Version]:
    """Canonical name -> pinned version; test_every_pin_parses reports the lines it skips."""
    result = {}
    for _, line in _constraint_lines():
        try:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            result[canonicalize_name(requirement.name)] = Version(specifier.version)
        except (InvalidRequirement, InvalidVersion, ValueError):
            continue
    return result


@pytest.fixture(scope="module")
def pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_every_pin_parses():
    seen: dict[str, int] = {}
    problems = []
    for number, line in _constraint_lines():
        try:
            requirement = Requirement(line)
        except InvalidRequirement as e:
            problems.append(f"line {number}: {line!r} does not parse: {e}")
            continue
        specifiers = list(requirement.specifier)
        if requirement.extras or requirement.url or requirement.marker:
            problems.append(f"line {number}: {line!r}: a pin is a bare name==version")
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            problems.append(f"line {number}: {line!r} is not pinned with a single ==")
            continue
        try:
            Version(specifiers[0].version)
        except InvalidVersion:
            problems.append(f"line {number}: {line!r}: not an exact version")
        name = canonicalize_name(requirement.name)
        if name in seen:
            problems.append(f"line {number}: {name} is pinned again (first on line {seen[name]})")
        seen.setdefault(name, number)
    assert not problems, "\n".join(problems)
    assert len(seen) > 20, "constraints.txt should lock every distribution, not a handful"


def test_torch_is_the_cpu_release(pins):
    assert pins.get("torch") == Version(TORCH), f"constraints.txt must pin torch=={TORCH}"


def test_the_project_itself_is_not_pinned(pins):
    assert canonicalize_name(PROJECT) not in pins


def _requirements(deps: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, deps)}


def test_breaking_apis_have_upper_bounds(pyproject):
    deps = _requirements(pyproject["project"]["dependencies"])
    for name in BREAKING:
        assert name in deps, f"{name} is not a dependency in pyproject.toml"
        operators = {s.operator for s in deps[name].specifier}
        assert operators & {"<", "<=", "~=", "=="}, f"{name} needs an upper bound: {deps[name]}"
        assert operators & {">", ">=", "~=", "=="}, f"{name} needs a lower bound: {deps[name]}"


def test_pins_satisfy_the_compatible_ranges(pyproject, pins):
    """A pin outside pyproject's range means constraints.txt is stale: run `make lock`."""
    project = pyproject["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    problems = []
    for group, deps in groups.items():
        for name, requirement in _requirements(deps).items():
            if name == canonicalize_name(PROJECT):
                continue  # a3c-course[notebooks] inside the dev extra
            if name not in pins:
                problems.append(f"{group}: {name} is not pinned in constraints.txt")
            elif not requirement.specifier.contains(pins[name], prereleases=True):
                problems.append(f"{group}: {name}=={pins[name]} is outside {requirement}")
    assert not problems, "\n".join(problems) + "\n(run `make lock`)"


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def _walk(root: metadata.Distribution, extras: frozenset[str]):
    """Yield (requirement, installed distribution or None, who asked) through the tree."""
    queue = [(root, extras)]
    done: set[tuple[str, frozenset[str]]] = set()
    while queue:
        dist, wanted = queue.pop()
        key = (canonicalize_name(dist.metadata["Name"]), wanted)
        if key in done:
            continue
        done.add(key)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if not _applies(requirement, wanted):
                continue
            found = _installed(requirement.name)
            yield requirement, found, dist.metadata["Name"]
            if found is not None:
                queue.append((found, frozenset(requirement.extras)))


def _installed_project() -> metadata.Distribution | None:
    """The project's installed metadata, not the a3c_course.egg-info a build leaves in ROOT."""
    found = list(metadata.distributions(name=PROJECT))
    installed = [d for d in found if Path(d.locate_file("")).resolve() != ROOT]
    return (installed or found or [None])[0]


def test_installed_requirements_are_pinned_at_their_installed_versions(pins):
    project = _installed_project()
    if project is None:
        pytest.skip(f"{PROJECT} is not installed (pip install -c constraints.txt -e '.[dev]')")
    # The dev extra always; the optional extras too where they are installed (make test: ray,
    # tensorboard; make lab: lab), so what the tests run with is what the lock says.
    extras = {"dev"}
    declared = [Requirement(line) for line in project.requires or []]
    for extra in OPTIONAL_EXTRAS:
        direct = [r for r in declared if r.marker and r.marker.evaluate({"extra": extra})]
        if direct and all(_installed(r.name) is not None for r in direct):
            extras.add(extra)
    problems = []
    checked = set()
    for requirement, dist, parent in _walk(project, frozenset(extras)):
        name = canonicalize_name(requirement.name)
        if name == canonicalize_name(PROJECT):
            continue  # the editable project itself: not a pin
        if dist is None:
            problems.append(f"{name} (required by {parent}: {requirement}) is not installed")
            continue
        if name in checked:
            continue
        checked.add(name)
        installed = Version(dist.version)
        if name not in pins:
            problems.append(f"{name}=={installed} (required by {parent}) is not in constraints.txt")
        elif not SpecifierSet(f"=={pins[name]}").contains(installed, prereleases=True):
            # == without a local label matches one (torch 2.13.0+cpu), as pip does.
            problems.append(f"{name}=={installed} is installed, constraints.txt pins {pins[name]}")
    assert checked, "found no installed requirement of a3c-course"
    assert not problems, (
        "\n".join(problems)
        + f"\n(extras checked: {sorted(extras)}; reinstall with make, or run `make lock`)"
    )


def _makefile_rules() -> list[tuple[str, str]]:
    """(target, logical recipe line) for every recipe line, continuations joined."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    rules, target = [], None
    for line in text.splitlines():
        if line.startswith("\t"):
            if target is not None:
                rules.append((target, line.strip()))
        elif match := re.match(r"^([^\s#:=][^:=]*):(?!=)", line):
            target = match.group(1).strip()
        elif line.strip() and not line.startswith("#"):
            target = None
    return rules


def test_every_make_install_uses_the_lock():
    installs = [(t, r) for t, r in _makefile_rules() if "pip install" in r]
    assert installs, "no pip install found in the Makefile"
    for target, recipe in installs:
        if target == "lock":
            continue  # the one place that resolves anew: it writes constraints.txt
        assert "-c constraints.txt" in recipe, f"{target}: installs without the lock: {recipe}"
        assert "torch" not in recipe or "torch==2.13.0" in recipe, recipe


def test_every_shipped_agent_is_package_data(pyproject):
    """A wheel holds what the package-data globs name: every file of a3c_course/pretrained/
    (the shipped agents, their records, the timeline's stage agents) must match one."""
    package = ROOT / "a3c_course"
    globs = pyproject["tool"]["setuptools"]["package-data"]["a3c_course"]
    covered = {p for g in globs for p in package.glob(g)}
    shipped = {p for p in (package / "pretrained").rglob("*") if p.is_file()}
    assert shipped, "no shipped agents found"
    assert shipped <= covered, sorted(str(p.relative_to(package)) for p in shipped - covered)
