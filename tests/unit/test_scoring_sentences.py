"""Sentence spans index the original text; the documented limits hold as documented."""

import pytest

from signet.scoring.sentences import SentenceSpan, split_sentences


def texts(text):
    spans = split_sentences(text)
    for span in spans:
        assert text[span.start : span.end] == span.text
    return [span.text for span in spans]


def test_spans_into_the_original_text():
    text = "  Hello world.  How are you?\n\nFine!"
    assert split_sentences(text) == [
        SentenceSpan(2, 14, "Hello world."),
        SentenceSpan(16, 28, "How are you?"),
        SentenceSpan(30, 35, "Fine!"),
    ]


def test_boundaries():
    assert texts('He said "stop." Then left.') == ['He said "stop."', "Then left."]
    assert texts("Really?! Yes (mostly.) Done") == ["Really?!", "Yes (mostly.)", "Done"]
    assert texts("# Heading\n\nBody text") == ["# Heading", "Body text"]
    assert texts("今天很好。明天呢？好！") == ["今天很好。", "明天呢？", "好！"]
    assert texts("Pi is 3.14 and v1.2.3 is out.") == ["Pi is 3.14 and v1.2.3 is out."]
    assert texts("Wait...what? Ok.") == ["Wait...what?", "Ok."]


def test_documented_limits():
    # abbreviations followed by a space end a sentence
    assert texts("Ask Dr. Smith.") == ["Ask Dr.", "Smith."]
    # a single newline does not
    assert texts("- one\n- two") == ["- one\n- two"]


def test_empty_text():
    assert split_sentences("") == []
    assert split_sentences(" \n\n\t ") == []


def test_not_a_string():
    with pytest.raises(ValueError, match="must be a string"):
        split_sentences(None)
