"""The answer's tokens as text, as the uncertainty risk reads them: with the served model's
real tokenizer, and with a SentencePiece-style one built here (Llama's and Mistral's kind)."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from signet.api.answer_scores import AnswerWords, token_texts

SWEDEN = "The capital of Sweden is Stockholm."


def _ids(tokenizer, text: str) -> list[int]:
    """The text's tokens and the end-of-answer token an answer ends with."""
    return [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]


@pytest.mark.parametrize("text", [SWEDEN, "Ankara, not İstanbul.", "東京 is the capital.", "Café ☕ 42%"])
def test_the_tokens_join_into_the_answer(detection_state, text):
    tokenizer = detection_state.tokenizer
    texts = token_texts(tokenizer, _ids(tokenizer, text))
    assert "".join(texts) == text and texts[-1] == ""  # no U+FFFD for a character split over tokens


def test_the_words_a_generated_answer_adds_to_its_prompt(detection_state):
    tokenizer = detection_state.tokenizer
    ids = _ids(tokenizer, SWEDEN)
    bearing = AnswerWords(tokenizer, ids, "What is the capital of Sweden?").bearing()
    texts = token_texts(tokenizer, ids)
    assert "".join(text for text, bears in zip(texts, bearing, strict=True) if bears).strip() == "Stockholm"


def test_a_sentencepiece_token_keeps_its_leading_space():
    """Decoded alone, "▁Stock" reads "Stock": the words would run together."""
    vocabulary = {"<unk>": 0, "</s>": 1, "▁The": 2, "▁capital": 3, "▁of": 4, "▁Sweden": 5, "▁is": 6}
    vocabulary.update({"▁Stock": 7, "holm": 8, ".": 9})
    model = Tokenizer(models.WordPiece(vocabulary, unk_token="<unk>", continuing_subword_prefix=""))
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    model.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, unk_token="<unk>", eos_token="</s>")
    ids = [2, 3, 4, 5, 6, 7, 8, 9, 1]
    assert tokenizer.batch_decode([[7]]) == ["Stock"]  # what one token alone gives
    texts = token_texts(tokenizer, ids)
    assert texts == ["The", " capital", " of", " Sweden", " is", " Stock", "holm", ".", ""]
    assert AnswerWords(tokenizer, ids, "What is the capital of Sweden?").bearing().tolist() == [
        False, False, False, False, False, True, True, False, False
    ]  # fmt: skip
