"""The claim rules of reference mode (signet.scoring.claims), on hand-made sentences."""

from __future__ import annotations

import pytest

from signet.scoring.claims import MAX_CLAIMS_PER_SENTENCE, source_facts, unsupported_claims, unsupported_word_share
from signet.scoring.sentences import split_sentences

SOURCE = (
    "Public-key encryption was described by Whitfield Diffie and Martin E. Hellman in a paper in 1976. "
    "Nettle uses GMP, the GNU bignum library, for all calculations with large numbers. "
    "You must install GMP, at least version 3.0, before compiling Nettle. "
    "The library does not support Windows. "
    "Each key takes twelve bytes and the cache holds 1,024 entries."
)


@pytest.fixture(scope="module")
def facts():
    return source_facts([sentence.text for sentence in split_sentences(SOURCE)])


def kinds(sentence: str, facts) -> list[tuple[str, str]]:
    return [(claim.kind, claim.text) for claim in unsupported_claims(sentence, facts)]


def test_a_faithful_restatement_has_no_claims(facts):
    assert kinds("Nettle uses GMP for calculations with large numbers.", facts) == []
    assert kinds("The library does not support Windows.", facts) == []
    # numbers compare by value: 12 and twelve, 1024 and 1,024
    assert kinds("Each key takes 12 bytes, and the cache holds 1024 entries.", facts) == []


def test_a_faithful_paraphrase_is_not_an_ngram_claim(facts):
    # synonyms make novel word pairs, but not a long run of mostly new words
    assert kinds("Nettle relies on GMP for every computation with big numbers.", facts) == []


def test_a_swapped_name_is_an_entity_claim_quoting_the_source(facts):
    claims = unsupported_claims("Public-key encryption was described by Whitfield Diffie and Ralph Merkle.", facts)
    assert [(c.kind, c.text) for c in claims] == [("entity", "Ralph Merkle")]
    assert claims[0].reason == "the source names Martin E. Hellman where it states this"


def test_an_initial_does_not_split_a_name(facts):
    assert kinds("Martin E. Hellman wrote about public-key encryption.", facts) == []


def test_a_changed_number_is_a_number_claim_quoting_the_source(facts):
    claims = unsupported_claims("You must install GMP, at least version 4.2, before compiling Nettle.", facts)
    assert [(c.kind, c.text) for c in claims] == [("number", "4.2")]
    assert claims[0].reason == "the source says 3.0 where it states this"


def test_the_quoted_source_sentence_is_the_one_with_a_number_of_the_kind(facts):
    # "Each key takes ... bytes" shares more words, but holds no date: the paper's sentence does
    claims = unsupported_claims("Diffie and Hellman described public-key encryption in a paper in 1986.", facts)
    assert [(c.kind, c.text, c.reason) for c in claims] == [
        ("date", "1986", "the source says 1976 where it states this")
    ]


def test_dates_and_quantities(facts):
    claims = unsupported_claims("The paper appeared in 1986, and each key takes twenty bytes.", facts)
    assert [(c.kind, c.text) for c in claims] == [("date", "1986"), ("quantity", "twenty")]
    assert claims[0].reason == "the date 1986 does not occur in the source"
    assert kinds("The paper came out in March.", facts) == [("date", "March")]


def test_spans_index_the_sentence():
    facts = source_facts(["Alice met Bob in Paris."])
    sentence = "Alice met Carol in Rome."
    for claim in unsupported_claims(sentence, facts):
        assert sentence[claim.start : claim.end] == claim.text
    assert kinds(sentence, facts) == [("entity", "Carol"), ("entity", "Rome")]


def test_an_added_negation_is_a_negation_claim(facts):
    claims = unsupported_claims("Nettle does not use GMP for calculations with large numbers.", facts)
    assert [(c.kind, c.text) for c in claims] == [("negation", "not")]
    assert "without a negation" in claims[0].reason


def test_a_dropped_negation_points_at_the_negated_word(facts):
    claims = unsupported_claims("The library supports Windows.", facts)
    assert [(c.kind, c.text) for c in claims] == [("negation", "supports")]
    assert claims[0].reason.startswith("the source negates this")


def test_a_negation_needs_a_restated_source_sentence(facts):
    # shares fewer than MIN_ALIGNED_WORDS content words with any source sentence
    assert [kind for kind, _ in kinds("It is not raining.", facts)] == []


def test_a_clause_absent_from_the_source_is_an_ngram_claim(facts):
    sentence = "Nettle uses GMP, and its maintainers publish weekly security bulletins through several mailing lists."
    claims = unsupported_claims(sentence, facts)
    assert [c.kind for c in claims] == ["ngram"]
    assert "and its maintainers publish weekly security bulletins" in claims[0].text


def test_the_first_word_is_a_name_only_as_an_acronym(facts):
    assert kinds("Compiling Nettle needs GMP.", facts) == []
    assert kinds("RSA is used by Nettle.", facts) == [("entity", "RSA")]


def test_a_source_sentence_cut_after_an_initial_is_joined_again():
    facts = source_facts([s.text for s in split_sentences("It was Martin E. Hellman who wrote it in 1976.")])
    assert [sentence.text for sentence in facts.sentences] == ["It was Martin E. Hellman who wrote it in 1976."]


def test_unsupported_word_share(facts):
    assert unsupported_word_share("Nettle uses GMP.", facts) == 0.0
    assert unsupported_word_share("Zebras gallop quickly.", facts) == 1.0
    assert unsupported_word_share("and the of", facts) == 0.0  # no content words


def test_unsupported_names_are_paired_in_order_with_the_sources():
    facts = source_facts(["Smith met Brown in London on Monday."])
    claims = unsupported_claims("Later, Smith met Jones in Paris on Monday.", facts)
    assert [(c.text, c.reason) for c in claims] == [
        ("Jones", "the source names Brown where it states this"),
        ("Paris", "the source names London where it states this"),
    ]


def test_a_name_the_sentence_uses_anywhere_is_no_alternative():
    facts = source_facts(["Rust was started by Graydon Hoare in 2006 at Mozilla."])
    claims = unsupported_claims("Rust was started by Graydon Hoare in 2006 at Google.", facts)
    assert [(c.text, c.reason) for c in claims] == [("Google", "the source names Mozilla where it states this")]


def test_a_decomposed_accent_matches_the_composed_one():
    facts = source_facts(["The paper is by José Nuñez."])
    assert unsupported_claims("The paper is by Jose\u0301 Nun\u0303ez.", facts) == []


def test_a_sentence_lists_at_most_the_capped_number_of_claims():
    facts = source_facts(["Eight."])
    claims = unsupported_claims("7 " * 50_000, facts)
    assert len(claims) == MAX_CLAIMS_PER_SENTENCE


def test_long_numbers_are_shortened_in_reasons():
    claims = unsupported_claims("9" * 5_000, source_facts(["Nothing here."]))
    assert len(claims[0].reason) < 100 and claims[0].text == "9" * 5_000
