"""vLLM's own series on the embedded server's /metrics: the engine's view of its load."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.common import exposed_families, monitored_families


def _generation_tokens(exposition: str) -> tuple[float, set[str]]:
    """vLLM's generated-token count and the model_name labels of its series."""
    total, names = 0.0, set()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name.startswith("vllm:") and "model_name" in sample.labels:
                names.add(sample.labels["model_name"])
            if sample.name == "vllm:generation_tokens_total":
                total += sample.value
    return total, names


def test_the_embedded_engine_exports_the_series_the_dashboard_uses(client):
    before, _ = _generation_tokens(client.get("/metrics").text)
    response = client.post("/generate", json={"prompt": "Name a colour.", "max_tokens": 6, "seed": 1})
    assert response.status_code == 200, response.text
    exposition = client.get("/metrics").text
    engine_families = {family for family in monitored_families() if family.startswith("vllm:")}
    assert engine_families and engine_families <= exposed_families(exposition)
    after, model_names = _generation_tokens(exposition)
    assert after - before == len(response.json()["token_ids"])
    # The model's name as responses give it, never the folder's path.
    assert model_names == {response.json()["model"]}
