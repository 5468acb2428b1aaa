"""The /ui page in headless Chromium against ``signet serve`` on the real engine: what an
analyst sees for watermarked, human and partly watermarked text, errors, the Generate and
Scores tabs, keyboard use, and that nothing outside the server loads.

Run alone: ``.venv/bin/python -m pytest tests/ui``. The run writes docs/img/ui-detect.png
and docs/img/ui-generate.png."""

from __future__ import annotations

import json
import re
import time

import pytest

from signet.api.provenance.protocol import ProvenanceReport
from signet.api.provenance.search import meaning_outcome
from signet.provenance import rare_words
from signet.provenance.significance import combine, smallest_p_value
from tests.ui.conftest import SCREENSHOTS

pytestmark = pytest.mark.engine

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
DETECT_TIMEOUT_MS = 60_000
GENERATE_TIMEOUT_MS = 180_000


def _generate(client, max_tokens: int, seed: int) -> str:
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens, "seed": seed}
    response = client.post("/generate", params={"watermark": "true"}, json=body)
    assert response.status_code == 200, response.text
    return response.json()["text"]


@pytest.fixture(scope="module")
def watermarked(client) -> tuple[str, dict]:
    """A watermarked text and the API's own detection result for it."""
    text = _generate(client, max_tokens=160, seed=11)
    result = client.post("/detect", json={"text": text, "details": True}).json()
    assert result["verdict"] == "watermarked", result
    return text, result


@pytest.fixture(scope="module")
def watermarked_text(watermarked) -> str:
    return watermarked[0]


@pytest.fixture(scope="module")
def human_text(human_passages) -> str:
    return human_passages["rust-book-ch04-01-what-is-ownership"]


def _words_prefix(text: str, length: int) -> str:
    """About ``length`` characters of ``text``, cut after a whole word."""
    return text[:length].rsplit(" ", 1)[0] + " "


def _detect(page, text: str, **fields) -> None:
    page.fill("#detect-text", text)
    if "key_id" in fields:
        page.fill("#detect-key-id", fields["key_id"])
    page.click("#detect-submit")  # marks the result busy at once, until the answer is shown
    page.wait_for_selector("#detect-result:not([aria-busy])", state="attached", timeout=DETECT_TIMEOUT_MS)


def _js_number(value: float) -> str:
    """What the page's formatNumber shows: whole numbers as they are, others to one decimal."""
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def _own_spans(tokens: list[dict]) -> list[dict]:
    """The tokens the page gives a span of their own. The token view shows the tokens of one
    multi-byte character (an emoji, a dash split into byte tokens) as one span, the first
    token's (app.js, tokenView), so a text with such a character has fewer spans than tokens."""
    shown, cursor = [], 0
    for token in tokens:
        if token["char_start"] is not None and token["char_end"] > max(cursor, token["char_start"]):
            shown.append(token)
            cursor = token["char_end"]
    return shown


def _verdict(page) -> str:
    return page.get_attribute("#detect-result .badge", "data-verdict")


def test_watermarked_text_is_highlighted_explained_and_plotted(page, watermarked):
    watermarked_text, expected = watermarked
    _detect(page, watermarked_text)
    assert _verdict(page) == "watermarked"
    assert page.inner_text("#detect-result .badge") == "Watermarked"
    explanation = page.inner_text("#detect-result .explanation")
    assert explanation.startswith("Watermarked:") and "p-value" in explanation and "below α = 1e-4" in explanation
    assert re.search(r"probability \d(\.\d)?e-\d+", explanation), explanation
    # The token view reproduces the text exactly, token by token.
    assert page.text_content("#detect-result .tokens") == watermarked_text
    green = page.locator("#detect-result .tokens .tok-green").count()
    red = page.locator("#detect-result .tokens .tok-red").count()
    shown = [token for token in _own_spans(expected["tokens"]) if token["scored"]]
    assert (green, red) == (sum(t["green"] for t in shown), sum(not t["green"] for t in shown))
    assert green > red > 0  # gamma = 0.25: human text has about three red tokens per green one
    assert page.get_attribute("#detect-result .tokens .tok-green >> nth=0", "title") == "green"
    # The plot: one point per scored token (spans or not), and the threshold line.
    points = page.get_attribute("#detect-result svg.plot polyline.plot-line", "points").split()
    assert len(points) == expected["num_scored_tokens"]
    assert page.locator("#detect-result svg.plot line.plot-threshold").count() == 1
    assert "threshold (normal approximation)" in page.text_content("#detect-result svg.plot")
    assert page.get_attribute("#detect-result svg.plot", "role") == "img"
    assert "scored tokens" in page.get_attribute("#detect-result svg.plot", "aria-label")
    page.screenshot(path=str(SCREENSHOTS / "ui-detect.png"), full_page=True)


@pytest.mark.parametrize("key_id", ["vllm", "synthid", "dualkey"])
def test_scored_schemes_shade_each_token_against_its_own_null_mean(page, client, key_id):
    """Gumbel-family scores have mean 1 without the watermark, SynthID's depth * 0.5: the page
    shades and labels each token against the key's own mean, and plots every scored token."""
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 120, "seed": 3, "key_id": key_id}
    text = client.post("/generate", params={"watermark": "true"}, json=body).json()["text"]
    expected = client.post("/detect", json={"text": text, "key_id": key_id, "details": True}).json()
    _detect(page, text, key_id=key_id)
    assert _verdict(page) == expected["verdict"] == "watermarked"
    shaded = page.locator("#detect-result .tokens [class*='tok-g'], #detect-result .tokens [class*='tok-r']")
    leaning = page.locator("#detect-result .tokens [class*='tok-g']").count()
    mean = expected["score_mean"]
    scored = [token["score"] for token in expected["tokens"] if token["scored"]]
    shown = [token["score"] for token in _own_spans(expected["tokens"]) if token["scored"]]
    assert shaded.count() == len(shown) and leaning == sum(score >= mean for score in shown)
    assert f"above {_js_number(mean)}" in page.text_content("#detect-result .legend")
    expected_sum = _js_number(mean * len(scored))
    assert f"where {expected_sum} was expected by chance" in page.inner_text("#detect-result .explanation")
    points = page.get_attribute("#detect-result svg.plot polyline.plot-line", "points").split()
    assert len(points) == len(scored)


def test_a_character_split_across_tokens_shows_as_one_span(page, client, human_text):
    # Emoji are several byte tokens each: the page shows each as one span, so it has fewer
    # spans than the API has tokens, and exactly the ones _own_spans counts.
    text = human_text + " \U0001f642\U0001f30a\U0001f9ed"
    expected = client.post("/detect", json={"text": text, "details": True}).json()
    _detect(page, text)
    spans = page.locator("#detect-result .tokens .tok").count()
    with_text = [token for token in expected["tokens"] if token["char_start"] is not None]
    assert spans == len(_own_spans(expected["tokens"])) < len(with_text)
    assert page.text_content("#detect-result .tokens") == text


def test_human_text_is_not_flagged(page, human_text):
    _detect(page, human_text)
    assert _verdict(page) == "not_watermarked"
    result_text = page.inner_text("#detect-result")
    assert page.inner_text("#detect-result .explanation").startswith("Not watermarked:")
    assert "not below α" in result_text
    assert not re.search(r"(?<!Not )\bWatermarked\b", result_text), result_text
    assert page.locator("#detect-result .tokens .tok-green").count() > 0  # highlighted all the same


def test_api_errors_are_shown_readably(page, human_text):
    _detect(page, human_text, key_id="nope")
    alert = page.get_by_role("alert")
    assert alert.inner_text() == "404 Not Found: no watermark key with key_id 'nope' (field: key_id)"
    assert page.locator("#detect-result .badge").count() == 0

    page.fill("#detect-key-id", "")
    _detect(page, "a" * 100_001)
    message = page.get_by_role("alert").inner_text()
    assert message.startswith("413 ") and "100,001 characters; the limit is 100,000 (field: text)" in message, message
    assert "{" not in message  # prose, not raw JSON


def test_unreachable_service_and_a_non_json_error_are_explained(page, signet_server, human_text):
    page.route("**/detect", lambda route: route.abort())
    _detect(page, human_text)
    assert page.get_by_role("alert").inner_text().startswith(f"Cannot reach the Signet service at {signet_server.url}/")
    page.unroute("**/detect")
    page.route("**/detect", lambda route: route.fulfill(status=502, body="<html>bad gateway</html>"))
    _detect(page, human_text)
    assert page.get_by_role("alert").inner_text() == "502 Bad Gateway: the service gave no details."


def test_a_watermarked_passage_inside_human_text_is_outlined(page, client, watermarked_text, human_passages):
    before = _words_prefix(human_passages["gpl-3-preamble"], 700)
    after = " " + _words_prefix(human_passages["mpl-2-definitions"], 700)
    text = before + watermarked_text + after
    _detect(page, text)
    assert _verdict(page) == "watermarked"
    window = page.locator("#detect-result .tokens .window")
    assert window.count() == 1
    start = int(window.get_attribute("data-char-start"))
    end = int(window.get_attribute("data-char-end"))
    # The page outlines exactly the passage the API found, over the caller's own characters.
    found = client.post("/detect", json={"text": text, "details": True, "windows": True, "alpha": 1e-4}).json()
    assert (start, end) == (found["window"]["char_start"], found["window"]["char_end"])
    assert window.text_content() == text[start:end]
    # And that passage is mostly the generated text. How far the best window reaches into the
    # human text around it depends on the generated tokens (grid windows start every half a
    # window), which differ between CPUs: a bound of a few characters held on one and not on
    # another, for the same code.
    generated = range(len(before), len(before) + len(watermarked_text))
    overlap = min(end, generated.stop) - max(start, generated.start)
    assert overlap > (end - start) / 2 and end - start > len(watermarked_text) / 3, (start, end, generated)
    note = page.inner_text("#detect-result .window-note")
    assert f"characters {start}–{end}" in note and "corrected for" in note
    assert page.locator("#detect-result svg.plot rect.plot-window").count() == 1


def test_text_is_never_markup(page, human_text):
    payload = '<img src=x onerror="window.__signetXss = 1"><script>window.__signetXss = 2</script>'
    _detect(page, _words_prefix(human_text, 400) + payload + " " + _words_prefix(human_text[400:], 400))
    assert page.locator("#detect-result img, #detect-result script").count() == 0
    assert payload in page.text_content("#detect-result .tokens")
    assert page.evaluate("window.__signetXss") is None


def test_generate_tab_generates_and_detects(page):
    page.click("#tab-generate")
    page.fill("#generate-prompt", PROMPT)
    page.fill("#generate-seed", "5")
    page.click("#generate-submit")
    assert page.is_disabled("#generate-submit")  # busy while the engine works
    assert page.get_attribute("#generate-result", "aria-busy") == "true"
    page.wait_for_selector("#generate-result .badge, #generate-error:not([hidden])", timeout=GENERATE_TIMEOUT_MS)
    assert page.is_hidden("#generate-error"), page.inner_text("#generate-error")
    assert re.match(r"Generated \d+ tokens", page.inner_text("#generate-result .generation-meta"))
    generated = page.text_content("#generate-result .tokens")
    assert len(generated.split()) > 40
    assert page.get_attribute("#generate-result .badge", "data-verdict") == "watermarked"
    assert not page.is_disabled("#generate-submit")
    page.screenshot(path=str(SCREENSHOTS / "ui-generate.png"), full_page=True)
    # The generated text can be taken to the Detect tab.
    page.click("#generate-result button.secondary")
    assert page.get_attribute("#tab-detect", "aria-selected") == "true"
    assert page.input_value("#detect-text") == generated


def test_consistency_sentences_are_shaded_by_score(page):
    page.click("#tab-scores")
    page.fill(
        "#consistency-source",
        "The Golden Gate Bridge opened in 1937. It spans the strait between San Francisco Bay and the "
        "Pacific Ocean. Its main span is 1,280 metres long.",
    )
    text = "The Golden Gate Bridge opened in 1937. Its main span is 2,100 metres long."
    page.fill("#consistency-text", text)
    checked = page.eval_on_selector_all("#consistency-methods input:checked", "inputs => inputs.map(i => i.value)")
    assert checked == ["source_bigram_max", "source_unigram_max"]
    page.click("#consistency-submit")
    page.wait_for_selector("#consistency-result .sentences, #consistency-error:not([hidden])", timeout=120_000)
    assert page.is_hidden("#consistency-error"), page.inner_text("#consistency-error")
    sentences = page.locator("#consistency-result .sentences .sentence")
    assert sentences.count() == 2
    labels = [
        float(label) for label in page.locator("#consistency-result .sentences .sentence-score").all_inner_texts()
    ]
    assert len(labels) == 2 and labels[1] > labels[0]  # "is 2" and "2,100" appear nowhere in the source
    classes = [sentences.nth(i).get_attribute("class") for i in range(2)]
    assert classes == ["sentence shade-0", "sentence shade-4"]  # scaled between the lowest and the highest
    options = page.eval_on_selector_all("#consistency-shade-method option", "options => options.map(o => o.value)")
    assert sorted(options) == ["source_bigram_max", "source_unigram_max"]
    for method in options:
        page.select_option("#consistency-shade-method", method)
        assert page.get_attribute("#consistency-result .sentences .sentence >> nth=0", "title").startswith(
            f"{method}: "
        )
    assert page.locator("#consistency-result table.data tbody tr").count() == 2  # passage-level scores
    # The claim the source contradicts is marked in its sentence, with the reason, and listed.
    mark = page.locator("#consistency-result .sentences mark.claim")
    assert mark.count() == 1 and mark.inner_text() == "2,100"
    assert mark.get_attribute("title") == "quantity: the source says 1,280 where it states this"
    assert page.locator("#consistency-result ul.claims li").all_inner_texts() == [
        "2,100 quantity: the source says 1,280 where it states this"
    ]
    assert page.inner_text("#consistency-result .risk").startswith("Risk that the text is not supported by its source:")
    assert page.get_attribute("#consistency-result .risk", "data-calibrated") == "true"


def test_tabs_work_from_the_keyboard_with_visible_focus(page):
    page.keyboard.press("Tab")  # the API key field
    page.keyboard.press("Tab")  # the selected tab
    assert page.evaluate("document.activeElement.id") == "tab-detect"
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-generate"
    assert page.get_attribute("#tab-generate", "aria-selected") == "true"
    assert page.get_attribute("#tab-detect", "aria-selected") == "false"
    assert page.is_visible("#panel-generate") and page.is_hidden("#panel-detect")
    outline = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]; })()"
    )
    assert outline[0] != "none" and float(outline[1].removesuffix("px")) >= 2, outline
    page.keyboard.press("End")
    assert page.get_attribute("#tab-scores", "aria-selected") == "true"
    page.keyboard.press("ArrowRight")  # wraps around
    assert page.get_attribute("#tab-detect", "aria-selected") == "true"
    # Tab moves on into the panel, whose controls all have labels.
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, textarea, select')]
             .filter(e => e.labels.length === 0).map(e => e.id)"""
    )
    assert unlabelled == []


# ---------------------------------------------------------------- provenance

# Generations are recorded off the request path (api/provenance/recorder.py): embedding one
# takes well under a second, but this machine's two cores may be busy with the engine.
RECORDED_TIMEOUT_S = 30.0


def _provenance(client, text: str) -> dict:
    """The API's own /detect answer with provenance, as the page asks for it."""
    body = {"text": text, "windows": True, "alpha": 1e-4, "details": True, "provenance": True}
    response = client.post("/detect", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _matched_ids(result: dict) -> list[str]:
    return [match["generation_id"] for match in result["provenance"]["matches"]]


def _wait_until_recorded(client, generation_id: str, text: str) -> dict:
    """Polls /detect until the registry names ``generation_id`` for ``text``; its last answer."""
    deadline = time.monotonic() + RECORDED_TIMEOUT_S
    while True:
        result = _provenance(client, text)
        if generation_id in _matched_ids(result):
            return result
        assert time.monotonic() < deadline, f"{generation_id} not recorded in {RECORDED_TIMEOUT_S} s: {result}"
        time.sleep(0.25)


def _recorded_generation(client, seed: int) -> tuple[str, str]:
    """A short generation of the API's, once the registry holds it: its id and text."""
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 48, "seed": seed}
    response = client.post("/generate", params={"watermark": "true"}, json=body)
    assert response.status_code == 200, response.text
    generation = response.json()
    assert re.fullmatch(r"gen-[0-9a-f]{32}", generation["generation_id"]), generation["generation_id"]
    _wait_until_recorded(client, generation["generation_id"], generation["text"])
    return generation["generation_id"], generation["text"]


def _match_row(page, generation_id: str):
    return page.locator(f'#provenance-matches tbody tr[data-generation-id="{generation_id}"]')


def test_provenance_finds_a_text_generated_through_the_page(page, client):
    page.click("#tab-generate")
    page.fill("#generate-prompt", PROMPT)
    page.fill("#generate-max-tokens", "48")
    page.fill("#generate-seed", "17")
    page.click("#generate-submit")
    page.wait_for_selector("#generate-result .badge, #generate-error:not([hidden])", timeout=GENERATE_TIMEOUT_MS)
    assert page.is_hidden("#generate-error"), page.inner_text("#generate-error")
    generation_id = page.text_content("#generate-generation-id code")
    key_id = re.search(r"watermarked with key (\S+) \(", page.inner_text("#generate-result .generation-meta")).group(1)
    assert re.fullmatch(r"gen-[0-9a-f]{32}", generation_id), generation_id
    generated = page.text_content("#generate-result .tokens")
    _wait_until_recorded(client, generation_id, generated)

    page.click("#generate-result button.secondary")  # to the Detect tab, with the text
    assert page.is_checked("#detect-provenance")  # searched by default
    _detect(page, generated)
    assert page.is_hidden("#detect-error"), page.inner_text("#detect-error")
    first = page.locator("#provenance-matches tbody tr").first
    assert first.get_attribute("data-generation-id") == generation_id
    cells = first.locator("td").all_inner_texts()
    assert cells[0] == generation_id
    assert re.fullmatch(r"\d\.\d{3}", cells[1]) and float(cells[1]) > 0.99, cells  # the very same text
    assert re.fullmatch(r"(\d\.\de[+-]\d+|< 1e-300)", cells[2]), cells
    # its rare words too, where the text has enough distinct terms for a rare-word fingerprint
    fingerprinted = len(rare_words.terms(generated)) >= rare_words.MIN_TERMS
    assert re.fullmatch(r"\d\.\d{3}", cells[3]) and (float(cells[3]) > 0.99) == fingerprinted, cells
    assert re.fullmatch(r"(\d\.\de[+-]\d+|< 1e-300)", cells[4]), cells
    assert cells[5] == key_id, cells
    assert re.search(r"\d", cells[6]), cells  # a local date and time
    # The session's server keeps no generation texts: the similarity alone, no side-by-side view.
    assert page.is_visible("#provenance-similarity-only")
    assert generation_id in page.inner_text("#provenance-similarity-only")
    assert page.locator("#provenance-side-by-side").count() == 0
    verdict = page.inner_text("#provenance-verdict")
    assert verdict.startswith("Generated here — decided by"), verdict
    assert page.get_attribute("#provenance .pill", "data-verdict") == "generated_here"


def test_provenance_shows_a_kept_generation_text_side_by_side(page, client):
    """The best match beside the caller's text. This stands in for a server run with
    SIGNET_PROVENANCE_STORE_TEXT=true, which would need a second engine start: the page's
    /detect is answered with a real answer of the session's server whose best match is given
    the text such a server would have kept."""
    generation_id, text = _recorded_generation(client, seed=29)
    result = _provenance(client, text)
    best = result["provenance"]["matches"][0]
    assert best["generation_id"] == generation_id and best["text"] is None  # this server keeps none
    kept = "The keeper climbed the stairs at dusk.\nA bottle lay on the rocks below: <b>not markup</b>."
    best["text"] = kept
    sent: list[dict] = []

    def answer(route):
        sent.append(route.request.post_data_json)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(result))

    page.route("**/detect", answer)
    _detect(page, text)
    assert sent and sent[0]["provenance"] is True
    view = page.locator("#provenance-side-by-side")
    assert view.is_visible()
    assert view.locator(".side-yours h4").inner_text() == "Your text"
    assert view.locator(".side-yours .passage").text_content() == text
    assert view.locator(".side-generation h4").inner_text() == f"Generation {generation_id}"
    assert view.locator(".side-generation .passage").text_content() == kept
    assert view.locator("b").count() == 0
    assert page.locator("#provenance-similarity-only").count() == 0


def test_provenance_says_when_the_watermark_was_tested_alone(page, client, human_text):
    """A text too short for a provenance verdict (a real answer), and a registry too large for
    any match to reach alpha / 2 (a real answer given the smallest_p_value of a registry of
    100,000 vectors: filling the session's registry that far would take minutes)."""
    short = " ".join(human_text.split()[:20])
    _detect(page, short)
    assert page.inner_text("#provenance-verdict").startswith("Not found"), page.inner_text("#provenance-verdict")
    assert "too short for a provenance verdict, so the watermark is tested alone" in page.inner_text(
        "#provenance-verdict"
    )

    result = _provenance(client, human_text)
    assert result["provenance"]["smallest_p_value"] < 5e-5  # the session's registry is small
    report = result["provenance"]
    report["smallest_p_value"] = smallest_p_value(report["num_pieces"] * 100_000)
    # The combined part as the server computes it for that registry (combined.rule drives the page).
    watermark_p_value = 1.0 if result["verdict"] == "insufficient_evidence" else result["corrected_p_value"]
    test = combine(watermark_p_value, [meaning_outcome(ProvenanceReport(**report))], result["alpha"])
    assert test.rule == "watermark_at_alpha"
    verdict = "not_found" if test.decided_by is None else "generated_here"
    result["combined"] = {
        "verdict": verdict,
        "p_value": test.p_value,
        "decided_by": test.decided_by,
        "rule": test.rule,
        "tests": list(test.tests),
        "rejected": list(test.rejected),
    }
    page.route(
        "**/detect", lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(result))
    )
    _detect(page, human_text)
    verdict = page.inner_text("#provenance-verdict")
    assert "Not even a copy could reach α/2 in a registry this size" in verdict, verdict


def test_provenance_unchecked_is_not_searched(page, human_text):
    sent: list[dict] = []

    def record(route):
        sent.append(route.request.post_data_json)
        route.continue_()

    page.route("**/detect", record)
    page.uncheck("#detect-provenance")
    _detect(page, human_text)
    assert _verdict(page) == "not_watermarked"
    assert sent and "provenance" not in sent[0]
    assert page.locator("#provenance").count() == 0


def test_provenance_match_is_erased_from_its_row(page, client):
    generation_id, text = _recorded_generation(client, seed=31)
    stale = _provenance(client, text)  # for the second half: an answer from before the erasure
    _detect(page, text)
    row = _match_row(page, generation_id)
    assert row.count() == 1
    row.get_by_role("button", name=f"Erase {generation_id}").click()
    row.wait_for(state="detached")
    assert "erased" in page.inner_text("#provenance-erase-status")
    assert generation_id not in _matched_ids(_provenance(client, text))  # a real DELETE

    # A result shown from before the erasure (another tab's, say): its Erase gets the
    # service's 404, shown with the problem's detail, and the row stays.
    page.route(
        "**/detect", lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(stale))
    )
    _detect(page, text)
    row = _match_row(page, generation_id)
    row.get_by_role("button", name=f"Erase {generation_id}").click()
    page.wait_for_selector("#provenance-erase-status.failed")
    message = page.inner_text("#provenance-erase-status")
    expected = f"Could not erase {generation_id}: 404 Not Found: no generation {generation_id} in this tenant's"
    assert message.startswith(expected), message
    assert row.count() == 1 and not row.get_by_role("button").is_disabled()


# WCAG contrast of each element's own text against the first opaque background behind it.
CONTRAST_CHECK = """() => {
  const rgba = (color) => {
    const parts = color.match(/rgba?\\(([^)]+)\\)/)[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
  };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = (element) => {
    for (let e = element; e; e = e.parentElement) {
      const color = rgba(getComputedStyle(e).backgroundColor);
      if (color[3] > 0) return color;
    }
    return [255, 255, 255, 1];
  };
  const failures = [];
  for (const element of document.querySelectorAll("body *")) {
    if (element.closest("svg") || !element.getClientRects().length) continue;
    if (![...element.childNodes].some((node) => node.nodeType === 3 && node.textContent.trim())) continue;
    const [a, b] = [luminance(rgba(getComputedStyle(element).color)), luminance(background(element))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) failures.push(`${element.tagName}.${element.className}: ${ratio.toFixed(2)}`);
  }
  return failures;
}"""


def test_all_text_has_a_contrast_of_at_least_4_5(page, human_text):
    _detect(page, human_text)
    assert page.locator("#detect-result .tokens .tok").count() > 100
    for tab in ("#tab-detect", "#tab-generate", "#tab-scores"):
        page.click(tab)
        assert page.evaluate(CONTRAST_CHECK) == [], tab


def test_nothing_outside_loads(page, browser_log, signet_server, client, human_text):
    _detect(page, human_text)  # so that this test alone sees a call to the API too
    # The requests of every page of this module so far, this one's included.
    outside = [url for url in browser_log.requests if not url.startswith(signet_server.url + "/")]
    assert outside == []
    expected = {f"{signet_server.url}/ui", f"{signet_server.url}/ui/static/app.js", f"{signet_server.url}/detect"}
    assert expected <= set(browser_log.requests)
    headers = client.get("/ui").headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "script-src 'self';" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
