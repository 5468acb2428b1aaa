"""The answer's tokens as text, as the uncertainty risk reads them, with the served model's real tokenizer."""

from __future__ import annotations

from signet.api.answer_scores import AnswerWords, token_texts


def test_each_token_is_its_own_text_and_a_special_token_is_empty(detection_state):
    tokenizer = detection_state.tokenizer
    ids = tokenizer("The capital of Sweden is Stockholm.", add_special_tokens=False)["input_ids"]
    ids.append(tokenizer.eos_token_id)  # an answer ends with it
    texts = token_texts(tokenizer, ids)
    assert len(texts) == len(ids) and texts[-1] == ""
    assert "".join(texts) == "The capital of Sweden is Stockholm."
    # the Rust tokenizer's decode_batch gives what transformers' slower batch_decode gives
    assert texts == tokenizer.batch_decode([[token] for token in ids], skip_special_tokens=True)


def test_the_words_a_generated_answer_adds_to_its_prompt(detection_state):
    tokenizer = detection_state.tokenizer
    ids = tokenizer("The capital of Sweden is Stockholm.", add_special_tokens=False)["input_ids"]
    words = AnswerWords(tokenizer, [*ids, tokenizer.eos_token_id], "What is the capital of Sweden?")
    bearing = words.bearing()
    texts = token_texts(tokenizer, ids)
    assert "".join(text for text, bears in zip(texts, bearing, strict=False) if bears).strip() == "Stockholm"
