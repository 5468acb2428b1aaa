"""Normalisation folds the attacks it names and maps spans back to the caller's text."""

from signet.watermark.normalization import normalize


def test_homoglyphs_and_zero_width_characters_fold_to_plain_latin():
    attacked = "Thе quіck\u200b brоwn fox"  # Cyrillic е, і, о and a zero-width space
    result = normalize(attacked, ["homoglyphs"])
    assert result.text == "The quick brown fox"
    # "brown" in the output came from the characters after the zero-width space
    start = result.text.index("brown")
    assert attacked[slice(*result.source_span(start, start + 5))].startswith("brоwn")


def test_nfc_composes_and_spans_cover_the_combining_mark():
    decomposed = "cafe\u0301 au lait"
    result = normalize(decomposed, ["nfc"])
    assert result.text == "café au lait"
    assert result.source_span(3, 4) == (3, 5)  # é came from "e" + U+0301
    assert normalize("already composed", ["nfc"]).text == "already composed"


def test_whitespace_collapses_runs_and_keeps_newlines():
    result = normalize("  one   two\t\tthree  \nfour ", ["whitespace"])
    assert result.text == "one two three\nfour"
    start = result.text.index("three")
    assert result.source_span(start, start + 5)[0] == "  one   two\t\tthree  \nfour ".index("three")


def test_no_steps_is_the_identity():
    text = "Ünïcode  text\u200b"
    result = normalize(text, [])
    assert result.text == text
    assert result.source_span(0, len(text)) == (0, len(text))
