"""``signet.client.Signet`` against the real service (vLLM engine, embedded model): every
route, sync and async, answers with the service's own response models."""

from __future__ import annotations

import asyncio

import pytest

from signet.api.detect.protocol import DetectBatchResponse, DetectResponse
from signet.api.generate.protocol import GenerateResponse
from signet.client import Signet, SignetError

pytestmark = pytest.mark.engine

ASK = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def signet(signet_server):
    with Signet(signet_server.url) as client:
        yield client


@pytest.fixture(scope="module")
def generated(signet) -> GenerateResponse:
    return signet.generate(messages=ASK, max_tokens=160, seed=11)


def test_generate_returns_a_typed_watermarked_response(generated):
    assert isinstance(generated, GenerateResponse)
    assert generated.watermark.enabled and generated.watermark.key_id == "main"
    assert len(generated.token_ids) == generated.usage.completion_tokens > 100


def test_detect_finds_the_watermark_in_text_and_token_ids(signet, generated):
    by_text = signet.detect(generated.text)
    by_ids = signet.detect(token_ids=generated.token_ids)
    assert isinstance(by_text, DetectResponse)
    assert by_text.verdict == by_ids.verdict == "watermarked"
    assert by_ids.p_value < 1e-6  # false failure: the seeded text scored p ~ 1e-12 when written
    assert by_text.gamma == 0.25


def test_human_text_is_not_flagged(signet, human_passages):
    answer = signet.detect(next(iter(human_passages.values())), key_ids="all", details=True)
    assert answer.verdict == "not_watermarked"
    assert answer.num_keys_tested >= 4 and answer.tokens  # every key tested; token details came back


def test_batch_answers_each_item_on_its_own(signet, generated):
    batch = signet.detect_batch([{"text": generated.text}, {"text": generated.text, "key_id": "nope"}])
    assert isinstance(batch, DetectBatchResponse)
    assert [item.status for item in batch.results] == [200, 404]
    assert batch.results[0].result.watermarked
    assert batch.results[1].error.detail == "no watermark key with key_id 'nope'"


def test_the_service_s_errors_raise_with_their_problem(signet):
    with pytest.raises(SignetError) as raised:
        signet.detect("a text to test with a key that does not exist", key_id="nope")
    assert raised.value.status == 404
    assert raised.value.field == "key_id"
    assert str(raised.value) == "404 Not Found: no watermark key with key_id 'nope' (field: key_id)"


def test_streamed_generation_matches_the_whole(signet, generated):
    chunks = list(signet.generate_stream(messages=ASK, max_tokens=160, seed=11))
    assert len(chunks) > 1
    assert "".join(chunk.text for chunk in chunks) == generated.text  # same seed, same tokens
    assert [token for chunk in chunks for token in chunk.token_ids] == generated.token_ids
    assert chunks[-1].finish_reason == generated.finish_reason and chunks[-1].watermark.enabled


def test_scores_and_readiness(signet):
    uncertainty = signet.score_uncertainty("What is the capital of France?", response="Paris.", max_tokens=8)
    assert {score.method for score in uncertainty.scores} >= {"perplexity", "max_sequence_probability"}
    assert not uncertainty.generated
    consistency = signet.score_consistency(
        "The bridge opened in 1937. It is purple.",
        source="The bridge opened in 1937 and is painted orange.",
        methods=["source_bigram_max"],
    )
    assert [sentence.text for sentence in consistency.sentences] == ["The bridge opened in 1937.", "It is purple."]
    # "It is purple" shares no word pair with the source; the first sentence is copied from it
    first, second = (sentence.scores["source_bigram_max"] for sentence in consistency.sentences)
    assert second > first
    assert signet.ready().status == "ready"


def test_async_twins(signet_server, generated):
    async def run():
        async with Signet(signet_server.url) as client:
            detected, streamed, ready = await asyncio.gather(
                client.adetect(generated.text),
                _collect(client.agenerate_stream(messages=ASK, max_tokens=160, seed=11)),
                client.aready(),
            )
            whole = await client.agenerate(messages=ASK, max_tokens=160, seed=11)
            return detected, streamed, ready, whole

    detected, streamed, ready, whole = asyncio.run(run())
    assert detected.verdict == "watermarked"
    assert "".join(chunk.text for chunk in streamed) == whole.text == generated.text
    assert ready.status == "ready"


async def _collect(chunks):
    return [chunk async for chunk in chunks]
