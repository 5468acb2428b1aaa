"""Engine process lifecycle, with real faults.

When vLLM's EngineCore dies (SIGKILL), generation answers 503 (not 500 or a hang),
readiness reports it, and detection, which needs no engine, keeps working. When the
service gets SIGTERM, the engine-core process goes with it. And a load that used to
kill vLLM's CPU engine no longer does.
"""

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil

from harness.services import running_signet_server


def _engine_core_processes(server_pid: int) -> list[psutil.Process]:
    children = psutil.Process(server_pid).children(recursive=True)
    return [child for child in children if "EngineCore" in " ".join([child.name(), *child.cmdline()])]


def test_dead_engine_gives_503_and_detection_survives(tmp_path):
    # Eager mode skips vLLM's one-minute warm-up compile; this test is about failure handling.
    with (
        running_signet_server(tmp_path, SIGNET_ENGINE_EAGER="1") as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        assert client.post("/generate", json={"prompt": "Hello", "max_tokens": 4}).status_code == 200
        engine_cores = _engine_core_processes(server.process.pid)
        assert engine_cores, "no EngineCore child found"
        for process in engine_cores:
            process.kill()
        psutil.wait_procs(engine_cores, timeout=30)

        response = client.post("/generate", json={"prompt": "Hello", "max_tokens": 4})
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert client.post("/generate", json={"prompt": "Hello", "max_tokens": 4}).status_code == 503
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        detection = client.post("/detect", json={"text": "Detection needs only the tokenizer and the key."})
        assert detection.status_code == 200 and detection.json()["watermarked"] is False


def test_sigterm_to_the_service_stops_the_engine_process(tmp_path):
    with running_signet_server(tmp_path, SIGNET_ENGINE_EAGER="1") as server:
        engine_cores = _engine_core_processes(server.process.pid)
        assert engine_cores, "no EngineCore child found"
        os.kill(server.process.pid, signal.SIGTERM)  # the main process only, as `kill PID` does
        server.process.wait(timeout=60)
        _, alive = psutil.wait_procs(engine_cores, timeout=30)
        assert not alive, f"engine-core processes outlived the service: {alive}"
        assert "Application shutdown complete" in server.log()


def test_concurrent_seeded_requests_with_long_prompts_do_not_kill_the_engine(client):
    # Regression: vLLM's CPU runner died when a seeded request's prompt was prefilled in
    # chunks ("CPU Generator does not use offset"). Twelve distinct ~260-token prompts
    # overflow one 2048-token step (SIGNET_MAX_MODEL_LEN in tests), which forced a split.
    filler = "The quick brown fox jumps over the lazy dog. " * 22

    def one(index):
        body = {"messages": [{"role": "user", "content": f"{index}: {filler}"}], "max_tokens": 8, "seed": index}
        return client.post("/generate", params={"watermark": "true"}, json=body)

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(one, range(12)))
    assert [response.status_code for response in responses] == [200] * 12, responses[0].text
    assert client.get("/readyz").status_code == 200
