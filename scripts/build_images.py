"""Build the API, slim-API and CPU-worker images with buildah, where there is no Docker engine
and no registry: `make images` runs this (as root; `apt-get install buildah podman debootstrap`).

    python3.11 scripts/build_images.py            # the three, reusing buildah's layer cache
    python3.11 scripts/build_images.py --no-cache # from scratch, as on a fresh machine

Three things differ from `docker build` elsewhere, and none of them reaches an image:

- **The base.** ``python:3.11.14-slim-bookworm`` cannot be pulled, so the Dockerfiles'
  ``BASE_IMAGE`` is a stand-in built here: Debian bookworm from debootstrap (minbase, plus
  the shared libraries CPython's modules link), with this machine's CPython 3.11 copied to
  ``/usr/local`` where the official image has its own, and the official image's PATH and
  LANG. Debian's own python3 (3.11.2) will not do: redis-py needs ``async_timeout`` below
  3.11.3, which the locks (resolved for 3.11.7) leave out. It is tagged
  ``localhost/signet-standin-python`` and rebuilt only when its recipe changes.
- **pip's configuration.** pip inside the build reads this machine's: one pip.conf merged
  from ``pip config list`` (files and PIP_* variables alike), mounted read-only with the CA
  bundle and every local folder it names (find-links, file:// indexes), at the same paths.
- **PyTorch's index** (``TORCH_INDEX_URL``) cannot be reached; pip would retry it for
  minutes. Where pip's configuration names a local index, the builds use that instead (the
  CPU torch wheel comes through the same configuration); set TORCH_INDEX_URL to choose.

The images are tagged with the package version, as k8s/ pins them:
``localhost/signet-api:<version>``, ``localhost/signet-worker-cpu:<version>``, and the API's
slim variant (``WITH_EMBEDDINGS=false``: no torch) ``localhost/signet-api-slim:<version>``. The CUDA
worker (docker/Dockerfile.worker) needs NVIDIA's CUDA base and is not built here: hadolint
and tests/deploy/test_docker.py check it offline.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
# Each image: its Dockerfile and the build arguments it takes besides the base's.
IMAGES = {
    "signet-api": ("docker/Dockerfile.api", {}),
    # Dockerfile.api's slim variant: no torch, for SIGNET_PROVENANCE=false (see its top).
    "signet-api-slim": ("docker/Dockerfile.api", {"WITH_EMBEDDINGS": "false"}),
    "signet-worker-cpu": ("docker/Dockerfile.worker-cpu", {}),
}
STANDIN = "localhost/signet-standin-python"
OFFICIAL_BASE = "python:3.11.14-slim-bookworm"
SUITE = "bookworm"
# What the official slim image carries besides the interpreter, and the libraries its
# extension modules link (ldd on lib-dynload): ssl, ctypes, sqlite3, bz2, lzma, uuid,
# readline, curses, zlib, pyexpat, nis. tkinter is left out, as in the official image.
DEBIAN_PACKAGES = (
    "ca-certificates",
    "netbase",
    "tzdata",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "libreadline8",
    "libncursesw6",
    "libtinfo6",
    "zlib1g",
    "libexpat1",
    "libnsl2",
    "libtirpc3",
    "libcrypt1",
)
# Left out of the copied interpreter: its own site-packages (pip, and whatever this machine
# installed), the test suite (123 MB), tkinter and IDLE, and every console script.
PYTHON_LEFT_OUT = ("site-packages", "test", "idlelib", "tkinter", "turtledemo", "_tkinter*", "__phello__")
PYTHON_ENV = ("PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
CHROOT_ENV = dict(variable.split("=", 1) for variable in PYTHON_ENV)  # none of this machine's
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
RECIPE = 2  # raise on any change to how the stand-in is made: a new tag, so a new build


class BuildError(RuntimeError):
    """A step of the build failed; the message says which and why."""


@dataclass(frozen=True)
class Built:
    image: str
    seconds: float
    size_bytes: int


def run(*command: str, capture: bool = False, timeout: float = 600) -> str:
    try:
        result = subprocess.run(command, capture_output=capture, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise BuildError(f"{' '.join(command[:3])} ... ran over {timeout:.0f} s") from error
    if result.returncode != 0:
        detail = f":\n{result.stderr[-4000:]}" if capture else ""
        raise BuildError(f"{' '.join(command[:3])} ... exited with {result.returncode}{detail}")
    return result.stdout if capture else ""


def require_tools() -> None:
    missing = [name for name in ("buildah", "podman", "debootstrap") if shutil.which(name) is None]
    if missing:
        raise BuildError(f"{', '.join(missing)} not found: apt-get install buildah podman debootstrap")
    if os.geteuid() != 0:
        raise BuildError("buildah --isolation chroot and debootstrap need root here")


# ------------------------------------------------------------------ pip's configuration


def parse_pip_config(listing: str) -> dict[str, str]:
    """``pip config list`` as one ``[global]`` section: ``:env:.find-links='/x'`` (a PIP_*
    variable, which wins over the files, as in pip) and ``global.cert='/y'``. Keys of other
    sections (``install.x``) keep their section."""
    settings: dict[str, str] = {}
    from_environment: dict[str, str] = {}
    for line in listing.splitlines():
        key, separator, quoted = line.strip().partition("=")
        if not separator or key.endswith(".config-file"):  # PIP_CONFIG_FILE: merged here already
            continue
        # pip prints each value as Python's repr: a multi-line find-links reads '\\n/a\\n/b'.
        value = " ".join(str(ast.literal_eval(quoted)).split())
        if key.startswith(":env:."):
            from_environment["global." + key.removeprefix(":env:.")] = value
        else:
            settings[key] = value
    return {**settings, **from_environment}


def pip_conf_text(settings: dict[str, str]) -> str:
    sections: dict[str, list[str]] = {}
    for key, value in sorted(settings.items()):
        section, _, name = key.partition(".")
        sections.setdefault(section, []).append(f"{name} = {value}")
    return "".join(f"[{section}]\n" + "\n".join(lines) + "\n" for section, lines in sections.items())


def local_paths(settings: dict[str, str]) -> list[Path]:
    """The files and folders pip's settings name on this machine: plain paths and file:// URLs."""
    found: set[Path] = set()
    for value in settings.values():
        for word in value.split():
            path = Path(word.removeprefix("file://"))
            if path.is_absolute() and path.exists():
                # A file:// index's /simple/ folder sits in the folder mounted whole.
                found.add(path.parent if path.name == "simple" else path)
    return sorted(found)


def build_mounts(python: str, folder: Path) -> tuple[list[str], dict[str, str]]:
    """buildah's ``-v`` arguments for pip inside the build, and pip's merged settings."""
    settings = parse_pip_config(run(python, "-m", "pip", "config", "list", capture=True))
    pip_conf = folder / "pip.conf"
    pip_conf.write_text(pip_conf_text(settings), encoding="utf-8")
    mounts = ["-v", f"{pip_conf}:/etc/pip.conf:ro"]
    for path in local_paths(settings):
        mounts += ["-v", f"{path}:{path}:ro"]
    return mounts, settings


def torch_index(settings: dict[str, str]) -> str | None:
    if os.environ.get("TORCH_INDEX_URL"):
        return os.environ["TORCH_INDEX_URL"]
    indexes = settings.get("global.extra-index-url", "").split() + settings.get("global.index-url", "").split()
    return next((url for url in indexes if url.startswith("file://")), None)


# ------------------------------------------------------------------------ the stand-in


def debian_mirror() -> str:
    """The mirror this machine's apt sources name for Debian bookworm's main archive."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    folder = Path("/etc/apt/sources.list.d")
    for source in [Path("/etc/apt/sources.list"), *sorted(folder.glob("*.list")), *sorted(folder.glob("*.sources"))]:
        text = source.read_text(encoding="utf-8", errors="replace") if source.is_file() else ""
        for url, suites in apt_entries(text):
            if SUITE in suites:
                return url
    return DEFAULT_MIRROR


def apt_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    """(URL, suites) of each enabled ``deb`` entry with the ``main`` component (Debian's own
    archive, not a third party's): one-line (``deb [opts] URL suite components``) or deb822
    stanzas (``URIs:``, ``Suites:``, ``Components:``)."""
    for match in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", text, flags=re.MULTILINE):
        if "main" in match[3].split():
            yield match[1], [match[2]]
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([\w-]+):[ \t]*(.*)$", stanza, flags=re.MULTILINE))
        enabled = fields.get("Enabled", "yes").lower() != "no"
        if enabled and "deb" in fields.get("Types", "").split() and "main" in fields.get("Components", "").split():
            for url in fields.get("URIs", "").split():
                yield url, fields.get("Suites", "").split()


def python_prefix(python: str) -> tuple[Path, str]:
    code = "import sys; print(sys.base_prefix); print('%d.%d.%d' % sys.version_info[:3])"
    prefix, version = run(python, "-c", code, capture=True).split()
    if not version.startswith("3.11.") or int(version.split(".")[2]) < 3:
        # Below 3.11.3 redis-py needs async_timeout, which the locks leave out.
        raise BuildError(f"{python} is CPython {version}; the images need 3.11.3 or later (set PYTHON)")
    if prefix == "/usr":
        raise BuildError(f"{python} is the distribution's Python; copy one built on its own (pyenv, /usr/local)")
    return Path(prefix), version


def standin_tag(version: str) -> str:
    """Named for the recipe: a changed package list or interpreter builds a new stand-in."""
    recipe = "\n".join([str(RECIPE), SUITE, version, *DEBIAN_PACKAGES, *PYTHON_LEFT_OUT, *PYTHON_ENV])
    return f"{STANDIN}:{version}-{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}"


def image_exists(image: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True).returncode == 0


def build_standin(python: str, work: Path) -> str:
    prefix, version = python_prefix(python)
    tag = standin_tag(version)
    if image_exists(tag):
        print(f"images: stand-in base {tag} exists", flush=True)
        return tag
    started = time.monotonic()
    rootfs = work / "rootfs"
    mirror = debian_mirror()
    print(f"images: debootstrap {SUITE} for the stand-in base", flush=True)
    packages = f"--include={','.join(DEBIAN_PACKAGES)}"
    run("debootstrap", "--variant=minbase", packages, SUITE, str(rootfs), mirror, capture=True, timeout=1800)
    scrub(rootfs, mirror)
    copy_python(prefix, rootfs / "usr" / "local")
    run("chroot", str(rootfs), "ldconfig")
    check_python(rootfs)
    commit_standin(rootfs, work / "base.tar", tag, version)
    # A filter, not the name as an argument: that means STANDIN:latest, which never exists.
    stale_tags = run(
        "buildah", "images", "--filter", f"reference={STANDIN}", "--format", "{{.Name}}:{{.Tag}}", capture=True
    )
    for stale in stale_tags.split():
        if stale != tag:  # an earlier recipe's: untagged now, its layers go with the last prune
            subprocess.run(["buildah", "rmi", stale], capture_output=True, check=False)
    print(f"images: stand-in base {tag} built in {time.monotonic() - started:.0f} s", flush=True)
    return tag


def scrub(rootfs: Path, mirror: str) -> None:
    """What debootstrap takes from this machine (its resolv.conf, hostname and hosts) emptied
    or set as a container runtime expects; apt's sources as the official image has them;
    no downloaded packages or package lists."""
    for name in ("resolv.conf", "hostname"):
        (rootfs / "etc" / name).write_text("")
    (rootfs / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    (rootfs / "etc" / "apt" / "sources.list").unlink(missing_ok=True)
    sources = [apt_stanza(mirror, f"{SUITE} {SUITE}-updates")]
    if mirror.rstrip("/") == DEFAULT_MIRROR:  # another mirror need not carry the security archive
        sources.append(apt_stanza(f"{DEFAULT_MIRROR}-security", f"{SUITE}-security"))
    (rootfs / "etc" / "apt" / "sources.list.d" / "debian.sources").write_text("\n".join(sources))
    for leftover in [*(rootfs / "var/cache/apt/archives").glob("*.deb"), *(rootfs / "var/lib/apt/lists").glob("*_*")]:
        leftover.unlink()


def apt_stanza(url: str, suites: str) -> str:
    return f"Types: deb\nURIs: {url}\nSuites: {suites}\nComponents: main\n{KEYRING}\n"


def commit_standin(rootfs: Path, archive: Path, tag: str, version: str) -> None:
    run("tar", "-C", str(rootfs), "-cf", str(archive), ".")
    container = run("buildah", "from", "scratch", capture=True).strip()
    try:
        run("buildah", "add", container, str(archive), "/", capture=True)
        config = ["buildah", "config", "--cmd", "python3"]
        for variable in (*PYTHON_ENV, f"PYTHON_VERSION={version}"):
            config += ["--env", variable]
        config += ["--label", f"org.opencontainers.image.description=a local stand-in for {OFFICIAL_BASE}"]
        run(*config, container)
        run("buildah", "commit", "--quiet", container, tag, capture=True)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)


def copy_python(prefix: Path, destination: Path) -> None:
    """The interpreter at ``prefix`` into ``destination`` (the image's /usr/local), as the
    official image lays it out: bin/python3.11 with its python3 and python links, its
    standard library, its shared library (where it has one) and its C headers."""
    for folder in ("bin", "lib", "include"):
        (destination / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(prefix / "bin" / "python3.11", destination / "bin" / "python3.11")
    for link in ("python3", "python"):
        (destination / "bin" / link).symlink_to("python3.11")
    ignore = shutil.ignore_patterns(*PYTHON_LEFT_OUT)
    shutil.copytree(prefix / "lib" / "python3.11", destination / "lib" / "python3.11", symlinks=True, ignore=ignore)
    (destination / "lib" / "python3.11" / "site-packages").mkdir()
    for library in (prefix / "lib").glob("libpython3*.so*"):
        shutil.copy2(library, destination / "lib" / library.name, follow_symlinks=False)
    shutil.copytree(prefix / "include" / "python3.11", destination / "include" / "python3.11")


def check_python(rootfs: Path) -> None:
    """Every extension module finds its libraries, and the modules Signet's stack uses import."""
    script = (
        "for f in /usr/local/lib/python3.11/lib-dynload/*.so; do ldd $f | grep 'not found' && exit 1; done;"
        " python3 -c 'import ssl, ctypes, sqlite3, bz2, lzma, uuid, zlib, venv, ensurepip'"
    )
    result = subprocess.run(
        ["chroot", str(rootfs), "/bin/sh", "-c", script], capture_output=True, text=True, env=CHROOT_ENV, check=False
    )
    if result.returncode != 0:
        raise BuildError(f"the stand-in's Python is incomplete:\n{result.stdout}{result.stderr}")


# -------------------------------------------------------------------------- the images


# The stages pip runs in: the final stage copies from them only.
PIP_STAGES = ("builder", "model")
BUILD_TIMEOUT_S = 1800  # a cold build of the worker takes 4 to 7 minutes here


def build_image(name: str, base: str, mounts: list[str], torch_index_url: str | None) -> Built:
    """Builds of one Dockerfile. First each stage pip runs in, with pip's mounts: buildah leaves
    an empty file or folder where each mount was, and these stages' files are thrown away but
    for what the final stage copies. Then the whole file without mounts: the first builds'
    layers are its cache, so only the final stage runs, and no mount point reaches the image.
    Each stage's build is tagged ``<name>-<stage>``, which keeps its layers (the cache) from
    ``buildah rmi --prune``."""
    dockerfile, arguments = IMAGES[name]
    tag = f"localhost/{name}:{VERSION}"
    arguments = {"BASE_IMAGE": base, **arguments}
    if torch_index_url:
        arguments["TORCH_INDEX_URL"] = torch_index_url
    common = ["buildah", "bud", "--isolation", "chroot", "--layers", "--file", dockerfile]
    for variable, value in arguments.items():
        common += ["--build-arg", f"{variable}={value}"]
    print(f"images: building {tag}", flush=True)
    started = time.monotonic()
    commands = [[*common, "--target", stage, "--tag", stage_tag(name, stage), *mounts] for stage in PIP_STAGES]
    for command in [*commands, [*common, "--tag", tag]]:
        try:
            result = subprocess.run([*command, "."], cwd=ROOT, check=False, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            raise BuildError(f"buildah bud {dockerfile} ({name}) ran over {BUILD_TIMEOUT_S} s") from error
        if result.returncode != 0:
            raise BuildError(f"buildah bud {dockerfile} ({name}) exited with {result.returncode} (its output is above)")
    seconds = time.monotonic() - started
    size = int(run("podman", "image", "inspect", "--format", "{{.Size}}", tag, capture=True))  # buildah has no bytes
    return Built(tag, seconds, size)


def stage_tag(name: str, stage: str) -> str:
    return f"localhost/{name}-{stage}:{VERSION}"


def forget(names: list[str]) -> None:
    """Remove these images, the others built from their Dockerfiles (whose stages share their
    layers: the API variants' model stage) and all their stages' builds, and so every cached
    layer of theirs, before a cold build. Not ``--no-cache``: that would also rebuild the
    layers one image shares with another built earlier in the same run, which a fresh machine
    builds once."""
    dockerfiles = {IMAGES[name][0] for name in names}
    for name in (name for name, (dockerfile, _) in IMAGES.items() if dockerfile in dockerfiles):
        for image in (f"localhost/{name}:{VERSION}", *(stage_tag(name, stage) for stage in PIP_STAGES)):
            if image_exists(image):
                run("buildah", "rmi", "--force", image, capture=True)
    prune()


def prune() -> None:
    """Layers that a rebuild replaced: untagged images no tagged image is built on (this
    removes any other project's too: `make images` is meant for a build machine). Repeated
    while a round removes something (five at most), in case one leaves a parent dangling."""
    for _ in range(5):
        pruned = subprocess.run(["buildah", "rmi", "--prune"], capture_output=True, text=True, check=False)
        if not pruned.stdout.strip():
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-cache", action="store_true", help="a cold build: every layer but the base's again")
    parser.add_argument("--only", choices=sorted(IMAGES), action="append", help="build only this image")
    parser.add_argument("--python", default=sys.executable, help="the CPython 3.11 the stand-in base copies")
    arguments = parser.parse_args()
    try:
        require_tools()
        with tempfile.TemporaryDirectory(prefix="signet-images-", dir="/var/tmp") as folder:
            work = Path(folder)
            base = build_standin(arguments.python, work)
            mounts, settings = build_mounts(arguments.python, work)
            names = arguments.only or sorted(IMAGES)
            if arguments.no_cache:
                forget(names)
            built = [build_image(name, base, mounts, torch_index(settings)) for name in names]
        prune()
    except BuildError as error:
        print(f"images: {error}", file=sys.stderr)
        return 1
    for image in built:
        print(f"images: {image.image} built in {image.seconds:.0f} s, {image.size_bytes / 1e9:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
