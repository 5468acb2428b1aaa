"""Containers started from the images `make images` builds (scripts/build_images.py), with
``buildah run --isolation chroot``, and configured as k8s/ configures their pods.

buildah is how an image runs on these machines: there is no Docker engine, and
``podman run`` fails (crun cannot set rlimits or cgroups in this sandbox). What differs from a
container runtime, and what callers must know:

- No network namespace: the container shares the host's, so its ports must be free ones.
- No PID namespace: the image's first process is not PID 1. tini, the worker image's entry
  point, is told to reap orphans as a subreaper instead (``TINI_SUBREAPER``), which is what
  being PID 1 would have given it.
- The root file system is writable. What a process writes there lands in the container's
  own layer, which ``Container.written()`` lists: where a pod's root is read-only
  (k8s/base: ``readOnlyRootFilesystem``), each of those writes would have failed.

Plain functions and context managers, no pytest: tests/images wraps them, bench/images.py
times them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import httpx
import psutil
import yaml

from harness import kubernetes
from harness.services import STARTUP_TIMEOUT_S, TEST_KEYS, RedisServer, free_port
from signet.tenants import api_key_digest

ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = ROOT / "scripts" / "build_images.py"
TINI_AS_SUBREAPER = {"TINI_SUBREAPER": "1"}
BUILD_TIMEOUT_S = 3600  # the three images from nothing take about 8 to 12 minutes here


class ContainerError(RuntimeError):
    """buildah refused a step, or a container did not do what it was started for."""


def buildah(*arguments: str) -> str:
    result = subprocess.run(["buildah", *arguments], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ContainerError(f"buildah {' '.join(arguments[:2])} exited with {result.returncode}: {result.stderr}")
    return result.stdout


def build_images(log_path: Path, *, cold: bool = False, only: Sequence[str] = (), script: Path = BUILD_SCRIPT) -> str:
    """``make images``'s script (or a copy's: it builds the tree it sits in); its report lines
    (``images: ...``). ContainerError on failure, with the end of the build's output."""
    command = [sys.executable, str(script), *(["--no-cache"] if cold else [])]
    for name in only:
        command += ["--only", name]
    try:
        with log_path.open("w") as log:
            result = subprocess.run(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=BUILD_TIMEOUT_S
            )
    except subprocess.TimeoutExpired as error:
        tail = log_path.read_text(errors="replace")[-6000:]
        raise ContainerError(f"scripts/build_images.py ran over {BUILD_TIMEOUT_S} s:\n{tail}") from error
    output = log_path.read_text(errors="replace")
    if result.returncode != 0:
        raise ContainerError(f"scripts/build_images.py exited with {result.returncode}:\n{output[-6000:]}")
    return "\n".join(line for line in output.splitlines() if line.startswith("images: "))


def image_tag(name: str) -> str:
    """The tag the build script gives an image: the package version, as k8s/ pins it."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    return f"localhost/{name}:{version}"


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str]
    command: list[str]
    user: str

    @property
    def start(self) -> list[str]:
        """What ``docker run IMAGE`` runs: the entry point, then the command."""
        return [*self.entrypoint, *self.command]


def image_config(image: str) -> ImageConfig:
    config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    return ImageConfig(config.get("Entrypoint") or [], config.get("Cmd") or [], config.get("User", ""))


# ----------------------------------------------------------------------- k8s pod specs


@dataclass(frozen=True)
class PodContainer:
    """One container of a rendered Deployment: its environment (``env`` values, then its
    ConfigMap's data, as ``envFrom`` gives them; ``env`` wins), its volumes by mount path,
    and its ``command`` and ``args`` (Kubernetes: command replaces the image's entry point,
    args its command)."""

    environment: dict[str, str]
    empty_dirs: list[str] = field(default_factory=list)
    secret_dirs: dict[str, str] = field(default_factory=dict)  # mount path -> Secret name
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)

    def start(self, image: ImageConfig) -> list[str]:
        """What Kubernetes runs in this container from ``image``."""
        if self.command:
            return [*self.command, *self.args]
        return [*image.entrypoint, *(self.args or image.command)]


def pod_container(docs: list[dict], component: str) -> PodContainer:
    """The container of the workload labelled with ``component``. Only the volume kinds the
    manifests use are read; any other is refused, so a manifest change cannot silently drop
    one here (``container_environment`` refuses the same way)."""
    pod = kubernetes.pod_spec(kubernetes.workload(docs, component))
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    empty_dirs, secret_dirs = [], {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            empty_dirs.append(mount["mountPath"])
        elif "secret" in volume:
            secret_dirs[mount["mountPath"]] = volume["secret"]["secretName"]
        else:
            raise ContainerError(f"{component}: volume {volume} is not read here")
    environment = kubernetes.container_environment(docs, container)
    return PodContainer(environment, empty_dirs, secret_dirs, container.get("command", []), container.get("args", []))


# ------------------------------------------------------------------------- containers


@dataclass
class Container:
    name: str
    image: str
    command: list[str]  # what it runs: the would-be PID 1 and its arguments
    process: subprocess.Popen  # `buildah run`
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def main_process(self, timeout: float = 10) -> psutil.Process:
        """The process ``command`` started (tini, or signet), once `buildah run` has started it."""
        wanted = [os.path.basename(word) for word in self.command]
        deadline = time.monotonic() + timeout
        while True:
            for process in self.descendants():
                with contextlib.suppress(psutil.Error):  # one that exited meanwhile
                    words = [os.path.basename(word) for word in process.cmdline()]
                    if words and not words[0].startswith("buildah") and words[-len(wanted) :] == wanted:
                        return process
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise ContainerError(f"{self.name}: no process runs {self.command}:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def descendants(self) -> list[psutil.Process]:
        """Every process under `buildah run`; none once it has exited."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def processes(self) -> list[psutil.Process]:
        """The main process and every process under it, as they are now."""
        main = self.main_process()
        return [main, *main.children(recursive=True)]

    @contextmanager
    def root(self) -> Iterator[Path]:
        """The container's root file system, mounted on the host (``buildah mount``)."""
        merged = Path(buildah("mount", self.name).strip())
        try:
            yield merged
        finally:
            buildah("umount", self.name)

    def written(self) -> list[str]:
        """What the container wrote into its root file system, i.e. outside its volumes: its
        own layer (overlay's upper folder, beside the merged one), as absolute paths."""
        with self.root() as merged:
            upper = merged.parent / "diff"
            if not upper.is_dir():  # another storage driver: no layer to read, not an empty one
                raise ContainerError(f"{self.name}: no overlay upper folder at {upper}")
            return sorted("/" + str(path.relative_to(upper)) for path in upper.rglob("*"))

    def terminate(self) -> None:
        """SIGTERM to the main process, as ``docker stop`` and Kubernetes send it."""
        self.main_process().send_signal(signal.SIGTERM)

    def stop(self, timeout: float) -> int:
        """SIGTERM, then the status `buildah run` exits with (the main process's, 1 where a
        signal ended it)."""
        self.terminate()
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL to every process of the container: tini starts its child in a process
        group of its own, so killing buildah's group would leave the worker and its engine
        running. `buildah run` then exits by itself, removing its folder in /var/tmp; it is
        killed only if it does not within 30 s."""
        for process in self.descendants():
            with contextlib.suppress(psutil.Error):
                if not os.path.basename(process.cmdline()[0]).startswith("buildah"):
                    process.kill()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@contextmanager
def running_container(
    image: str,
    log_path: Path,
    environment: dict[str, str],
    volumes: dict[str, Path],
    read_only: Collection[str] = (),
    command: Sequence[str] = (),
) -> Iterator[Container]:
    """``image`` running ``command`` (by default its entry point and command, as ``docker run``
    starts it) with exactly ``environment`` added to the image's, and each host folder of
    ``volumes`` mounted at its key (read-only where the key is in ``read_only``). Killed
    where still running, and removed, after."""
    name = f"signet-test-{uuid.uuid4().hex[:12]}"
    try:
        buildah("from", "--name", name, "--pull=never", "--quiet", image)
        started = list(command) or image_config(image).start
        arguments = ["buildah", "run", "--isolation", "chroot"]
        for variable, value in environment.items():
            arguments += ["--env", f"{variable}={value}"]
        for target, source in volumes.items():
            arguments += ["--volume", f"{source}:{target}" + (":ro" if target in read_only else "")]
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [*arguments, name, "--", *started], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        container = Container(name, image, started, process, log_path)
        try:
            yield container
        finally:
            if process.poll() is None:
                container.kill()
    finally:
        removed = subprocess.run(["buildah", "rm", name], capture_output=True, text=True, check=False)
        if removed.returncode != 0 and "no container" not in removed.stderr.lower():
            print(f"harness.containers: buildah rm {name}: {removed.stderr}", file=sys.stderr)


# ------------------------------------------------------------------------ a deployment

OVERLAY = "dev-cpu"
USER_ID = 10001  # the images' USER and the pods' runAsUser
API_KEY = "sk-image-test-3f9a1c7e52b04d68"
KEYS = {**TEST_KEYS, "keys": [key for key in TEST_KEYS["keys"] if key["key_id"] == "main"]}
TENANT = {"tenant": "moderation", "key_ids": ["main"], "api_keys": [{"sha256": api_key_digest(API_KEY), "name": "ci"}]}


@functools.cache
def overlay_documents() -> list[dict]:
    """The dev-cpu overlay, rendered once per process (kubectl kustomize, about a second)."""
    return kubernetes.render(OVERLAY, Path(sys.executable).parent / "kubectl")[1]


@dataclass
class Pod:
    """One of the overlay's pods, as a container."""

    container: Container
    volumes: dict[str, Path]  # mount path -> host folder
    environment: dict[str, str]  # what the container was started with besides its image's


@contextmanager
def running_pod(
    component: str, image: str, folder: Path, redis_url: str, environment: dict[str, str] | None = None
) -> Iterator[Pod]:
    """The overlay's ``component`` pod from ``image``: its command, environment (with the
    overrides below and then ``environment``) and volumes, in ``folder`` (made here: it must
    not exist). Not waited for; killed, where still running, and removed after."""
    pod = pod_container(overlay_documents(), component)
    folder.mkdir(parents=True)
    with ExitStack() as stack:
        volumes = pod_volumes(pod, folder, stack)
        started_with = {**pod.environment, **_overrides(component, redis_url), **(environment or {})}
        container = stack.enter_context(
            running_container(
                image,
                folder / "container.log",
                started_with,
                volumes,
                read_only=pod.secret_dirs,
                command=pod.start(image_config(image)),
            )
        )
        yield Pod(container, volumes, started_with)


def api_url(pod: Pod) -> str:
    """An API pod's address on the host (its SIGNET_PORT, on loopback)."""
    return f"http://127.0.0.1:{pod.environment['SIGNET_PORT']}"


@dataclass
class Deployment:
    """An API container and a worker container on one Redis, as the overlay's pods."""

    api: Container
    worker: Container
    api_url: str
    redis_url: str
    volumes: dict[str, dict[str, Path]]  # component -> mount path -> host folder
    healthy_after: float  # seconds from starting the containers to the API's first /healthz 200
    ready_after: float  # ... to /readyz 200 with the worker counted

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}


@contextmanager
def running_deployment(folder: Path, api_image: str, worker_image: str) -> Iterator[Deployment]:
    """Redis on the host, then the worker and the API from their images as the overlay's pods
    run them, until /readyz counts the worker; all stopped after. ContainerError if a
    container exits first or STARTUP_TIMEOUT_S passes."""
    overlay_documents()  # rendered before the clock starts
    redis_server = RedisServer(folder)
    with ExitStack() as stack:
        stack.callback(redis_server.stop)
        redis_server.start()
        started = time.monotonic()
        worker = stack.enter_context(running_pod("worker", worker_image, folder / "worker", redis_server.url))
        api = stack.enter_context(running_pod("api", api_image, folder / "api", redis_server.url))
        containers = [worker.container, api.container]
        healthy_after = wait_for(api_url(api), "/healthz", lambda body: True, containers) - started
        ready_after = wait_for(api_url(api), "/readyz", lambda body: body.get("workers") == 1, containers) - started
        yield Deployment(
            api.container,
            worker.container,
            api_url(api),
            redis_server.url,
            {"worker": worker.volumes, "api": api.volumes},
            healthy_after,
            ready_after,
        )


def _overrides(component: str, redis_url: str) -> dict[str, str]:
    """What differs from the pod's environment, and why (the module's docstring)."""
    overrides = {"SIGNET_REDIS_URL": redis_url}  # not the in-cluster Service signet-redis
    if component == "api":
        overrides |= {"SIGNET_HOST": "127.0.0.1", "SIGNET_PORT": str(free_port())}  # the host's network
    else:
        overrides |= {"SIGNET_WORKER_METRICS_HOST": "127.0.0.1", "SIGNET_WORKER_METRICS_PORT": str(free_port())}
        overrides |= TINI_AS_SUBREAPER  # no PID namespace
    return overrides


def pod_volumes(pod: PodContainer, folder: Path, stack: ExitStack) -> dict[str, Path]:
    """A host folder for each of the pod's volumes: emptyDirs empty and owned by the pod's
    user (as fsGroup makes them), /dev/shm on the host's tmpfs (``medium: Memory``), and each
    Secret's folder holding the file the environment names in it, readable by that user."""
    volumes: dict[str, Path] = {}
    for mount_path in pod.empty_dirs:
        if mount_path == "/dev/shm":
            host = Path(tempfile.mkdtemp(prefix="signet-image-test-", dir="/dev/shm"))
            stack.callback(shutil.rmtree, host, ignore_errors=True)
        else:
            host = folder / mount_path.strip("/").replace("/", "-")
            host.mkdir(parents=True)
        os.chown(host, USER_ID, USER_ID)
        volumes[mount_path] = host
    files = {"SIGNET_KEYS_FILE": json.dumps(KEYS), "SIGNET_API_KEYS_FILE": yaml.safe_dump({"tenants": [TENANT]})}
    for mount_path in pod.secret_dirs:
        host = folder / mount_path.strip("/").replace("/", "-")
        host.mkdir(parents=True)
        for variable, text in files.items():
            path = PurePosixPath(pod.environment.get(variable, "/"))
            if str(path.parent) == mount_path:
                (host / path.name).write_text(text)
                os.chown(host / path.name, 0, USER_ID)
                (host / path.name).chmod(0o440)  # the Secret's defaultMode, group: the pod's fsGroup
        if not any(host.iterdir()):
            raise ContainerError(f"no environment variable names a file in the Secret mounted at {mount_path}")
        volumes[mount_path] = host
    return volumes


def wait_for(api_url: str, path: str, accept: Callable[[dict], bool], containers: Sequence[Container]) -> float:
    """Until GET ``path`` answers 200 with a body ``accept`` takes; when it did (monotonic).
    ContainerError if one of ``containers`` exits first or STARTUP_TIMEOUT_S passes."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        for container in containers:
            if container.process.poll() is not None:
                raise ContainerError(
                    f"{container.image} exited with {container.process.returncode}:\n{container.log()[-4000:]}"
                )
        try:
            response = httpx.get(f"{api_url}{path}", timeout=5)
            if response.status_code == 200 and accept(response.json()):
                return time.monotonic()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    logs = "\n".join(f"--- {container.image}\n{container.log()[-3000:]}" for container in containers)
    raise ContainerError(f"GET {path} not ready after {STARTUP_TIMEOUT_S} s:\n{logs}")
