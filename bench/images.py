"""The images' build times, sizes and start-up, as `make images` builds them here (buildah, on
the stand-in base of scripts/build_images.py) and tests/images runs them.

    .venv/bin/python -m bench.images [--skip-cold]

Four builds of the images (API, slim API, CPU worker), one after the other, each timed by scripts/build_images.py:

1. cold: every layer built again (``--no-cache``), as on a fresh machine (the stand-in base is
   built only when missing: its time, when it is, is printed apart);
2. warm, nothing changed: buildah's layer cache answers every step;
3. warm after a code change: a copy of the tree with one comment added to the package, the
   usual CI run (new commits change service/, so the package's layer and all after it run);
4. the tree itself again (the cache of 2 was replaced by 3).

Then the API and the worker start as tests/images starts them (the dev-cpu overlay's environment,
Redis on the host) and the time from starting the containers to the API's first /healthz
and to /readyz counting the worker is printed. The worker's cache volume starts empty, as
an emptyDir does, so its engine compiles the model every start.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.containers import ROOT, ContainerError, build_images, image_tag, running_deployment
from harness.kubernetes import ManifestError

# What the images' builds read: the Dockerfiles' COPY sources, the build script and its inputs.
TREE = ("pyproject.toml", "README.md", ".dockerignore", "service", "requirements", "docker", "scripts")


def timed_build(label: str, root: Path, *, cold: bool = False) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        lines = build_images(Path(folder) / "build.log", cold=cold, script=root / "scripts" / "build_images.py")
    print(f"{label}: {time.monotonic() - started:.0f} s in all")
    for line in lines.splitlines():
        print(f"  {line.removeprefix('images: ')}")


def changed_copy(folder: Path) -> Path:
    copy = folder / "signet"
    for name in TREE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    package = copy / "service" / "signet" / "__init__.py"
    package.write_text(package.read_text() + f"\n# bench.images: a code change at {time.time()}\n")
    return copy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-cold", action="store_true", help="leave out the cold build")
    arguments = parser.parse_args()
    try:
        if not arguments.skip_cold:
            timed_build("cold", ROOT, cold=True)
        timed_build("warm, nothing changed", ROOT)
        with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
            timed_build("warm, after a code change", changed_copy(Path(folder)))
        timed_build("warm, the tree again", ROOT)
        with tempfile.TemporaryDirectory() as folder:
            with running_deployment(Path(folder), image_tag("signet-api"), image_tag("signet-worker-cpu")) as running:
                print(f"start: /healthz after {running.healthy_after:.1f} s, /readyz after {running.ready_after:.1f} s")
    except (ContainerError, ManifestError, subprocess.SubprocessError) as error:
        print(f"bench.images: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
