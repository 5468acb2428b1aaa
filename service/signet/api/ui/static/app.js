// Signet's web page: calls the API of the server that serves it, renders the answers.
// No framework and no build step. User text only ever reaches the DOM through
// textContent (never innerHTML), and no style attribute is written (the CSP forbids
// inline styles): every visual state is a class in style.css.

const API_KEY_STORAGE = "signet-api-key";
const SVG_NS = "http://www.w3.org/2000/svg";

// Methods of POST /score/consistency (service/signet/api/score/protocol.py), by mode.
// The n-gram ones need no extra engine work beyond the samples, so they are ticked by default.
const CONSISTENCY_METHODS = {
  reference: ["source_bigram_max", "source_unigram_max", "source_bigram", "source_unigram", "source_bigram_novelty",
    "source_entailment", "mqag_kl", "mqag_total_variation", "mqag_hellinger", "mqag_hellinger_squared", "mqag_counting"],
  self: ["selfcheck_bigram_max", "selfcheck_unigram_max", "selfcheck_bigram", "selfcheck_unigram",
    "selfcheck_bigram_novelty", "selfcheck_embedding", "selfcheck_llm_support", "selfcheck_llm_entailment"],
};
const DEFAULT_CONSISTENCY_METHODS = new Set(["source_bigram_max", "source_unigram_max", "selfcheck_bigram_max",
  "selfcheck_unigram_max"]);

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- DOM helpers

/** An element with attributes and children; strings become text nodes (never markup). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attributes);
  element.append(...children);
  return element;
}

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.setAttribute("class", value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
}

// ---------------------------------------------------------------- numbers

/** p-values: scientific below 0.001 (7.7e-13), else two significant digits (0.24). */
function formatP(p) {
  if (p === 0) return "< 1e-300";
  if (p < 1e-3) return p.toExponential(1);
  return String(Number(p.toPrecision(2)));
}

function formatNumber(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

function formatAlpha(alpha) {
  return alpha < 1e-3 ? alpha.toExponential() : String(alpha);
}

// Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9).
const ACKLAM_A = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2,
  -3.066479806614716e1, 2.506628277459239];
const ACKLAM_B = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1,
  -1.328068155288572e1];
const ACKLAM_C = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734,
  4.374664141464968, 2.938163982698783];
const ACKLAM_D = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];

function inverseNormal(p) {
  const polynomial = (coefficients, x) => coefficients.reduce((sum, c) => sum * x + c, 0);
  const tail = (q) => polynomial(ACKLAM_C, q) / (polynomial(ACKLAM_D, q) * q + 1);
  if (p <= 0) return -Infinity;
  if (p >= 1) return Infinity;
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return (polynomial(ACKLAM_A, r) * q) / (polynomial(ACKLAM_B, r) * r + 1);
}

// ---------------------------------------------------------------- API calls

class ApiProblem extends Error {
  constructor(message, status = null, field = null) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

/** POST a JSON body to the API; resolves to the JSON answer or throws an ApiProblem with a readable message. */
async function callApi(path, body) {
  return requestApi("POST", path, body);
}

/** One request to the API, with the user's key; the JSON answer, null for 204, or an ApiProblem. */
async function requestApi(method, path, body = undefined) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const apiKey = $("api-key").value.trim();
  if (apiKey) headers["X-API-Key"] = apiKey;
  let response;
  try {
    // Relative: the API is served next to this page (under the same prefix, if any).
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    const origin = new URL(".", document.baseURI).href;
    throw new ApiProblem(`Cannot reach the Signet service at ${origin} (${error.message}).`);
  }
  if (response.status === 204) return null;
  if (response.ok) return response.json();
  const problem = await response.clone().json().catch(() => null);
  throw new ApiProblem(await problemMessage(response), response.status, problem?.field ?? null);
}

/** POST /detect with per-token details; a tenant not granted them (403 on "details") gets the verdict alone. */
async function detectWithDetails(body) {
  try {
    return await callApi("detect", { ...body, details: true });
  } catch (problem) {
    if (!(problem instanceof ApiProblem && problem.status === 403 && problem.field === "details")) throw problem;
    return callApi("detect", { ...body, details: false });
  }
}

/** Detection that also searches the caller's generations when ``body.provenance``; a service whose
 * registry is off (422 on "provenance") gets the watermark test alone, and the answer says why. */
async function detectWithProvenance(body) {
  try {
    return await detectWithDetails(body);
  } catch (problem) {
    if (!(body.provenance && problem instanceof ApiProblem && problem.status === 422 && problem.field === "provenance")) {
      throw problem;
    }
    const result = await detectWithDetails({ ...body, provenance: false });
    return { ...result, provenanceUnavailable: problem.message };
  }
}

// HTTP/2 carries no reason phrase: the names of the statuses a proxy might answer with.
const REASONS = { 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 413: "Content Too Large",
  422: "Unprocessable Content", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
  503: "Service Unavailable", 504: "Gateway Timeout" };

/** "413 Request Entity Too Large: text is 100,001 characters; the limit is 100,000 (field: text)". */
async function problemMessage(response) {
  let problem = null;
  try {
    problem = await response.json();
  } catch {
    // not JSON: a proxy's page, say; the status line alone must do
  }
  const title = problem?.title || response.statusText || REASONS[response.status] || "Error";
  let message = `${response.status} ${title}`;
  message += problem?.detail ? `: ${problem.detail}` : ": the service gave no details.";
  if (problem?.field) message += ` (field: ${problem.field})`;
  const advice = [];
  if (response.status === 401) advice.push("Enter an API key at the top of the page.");
  const retryAfter = response.headers.get("Retry-After");
  if (retryAfter && (response.status === 429 || response.status === 503)) advice.push(`Try again in ${retryAfter} s.`);
  return advice.length ? `${message.replace(/\.?$/, ".")} ${advice.join(" ")}` : message;
}

/** Runs ``work`` with the form's button disabled and its result region marked busy; shows its error. */
async function whileBusy(name, statusText, work) {
  const button = $(`${name}-submit`);
  const status = $(`${name}-status`);
  const error = $(`${name}-error`);
  const result = $(`${name}-result`);
  button.disabled = true;
  result.setAttribute("aria-busy", "true");
  status.textContent = statusText;
  status.classList.add("busy");
  error.hidden = true;
  error.textContent = "";
  try {
    await work((text) => { status.textContent = text; });
    status.textContent = "";
  } catch (problem) {
    status.textContent = "";
    error.textContent = problem instanceof ApiProblem ? problem.message : `Unexpected error in the page: ${problem}`;
    error.hidden = false;
    if (!(problem instanceof ApiProblem)) console.error(problem);
  } finally {
    button.disabled = false;
    status.classList.remove("busy");
    result.removeAttribute("aria-busy");
  }
}

/** The integer in an input, or undefined when it is blank (the API's default then applies). */
function optionalNumber(id) {
  const raw = $(id).value.trim();
  return raw === "" ? undefined : Number(raw);
}

function optionalText(id) {
  const raw = $(id).value.trim();
  return raw === "" ? undefined : raw;
}

function promptInput(text, asChat) {
  return asChat ? { messages: [{ role: "user", content: text }] } : { prompt: text };
}

// ---------------------------------------------------------------- detection result

function isKgw(result) {
  // gamma: KGW keys report it even where the counts are withheld (a short text)
  return (result.gamma ?? result.num_green_tokens ?? null) !== null;
}

/** The window, when it is a passage of the text rather than all of it. */
function partialWindow(result) {
  const window = result.window;
  return window && window.num_scored_tokens < result.num_scored_tokens ? window : null;
}

/** Scored-token evidence in [tokenStart, tokenEnd): count and statistic (green tokens or score sum). */
function evidenceIn(tokens, tokenStart, tokenEnd) {
  let count = 0;
  let sum = 0;
  for (const token of tokens.slice(tokenStart, tokenEnd)) {
    if (!token.scored) continue;
    count += 1;
    sum += token.green === null ? token.score : Number(token.green);
  }
  return { count, sum };
}

/** The one sentence that says what the verdict rests on. */
function explanation(result, alpha) {
  if (result.verdict === "insufficient_evidence") {
    return `Too short to tell: only ${result.num_scored_tokens} scored tokens, at least ${result.min_scored_tokens} are needed.`;
  }
  const window = partialWindow(result);
  let count = result.num_scored_tokens;
  let sum = result.score;
  let where = "";
  if (window && result.tokens) {
    ({ count, sum } = evidenceIn(result.tokens, window.token_start, window.token_end));
    where = "in the most significant passage, ";
  }
  let evidence;
  if (isKgw(result) && result.gamma !== null && result.gamma !== undefined) {
    evidence = `${where}${sum} of ${count} scored tokens are green where ${formatNumber(result.gamma * count)} were expected by chance`;
  } else if (isKgw(result)) {
    evidence = `${where}${sum} of ${count} scored tokens are green`;
  } else {
    evidence = `${where}the scores of ${count} scored tokens sum to ${formatNumber(sum)} where ${formatNumber(result.score_mean * count)} was expected by chance`;
  }
  if (!window && result.z_score !== null) evidence += ` (z = ${formatNumber(result.z_score)})`;
  const corrections = [];
  if (result.window) corrections.push(`${result.window.num_windows} passages searched`);
  if (result.num_keys_tested > 1) corrections.push(`${result.num_keys_tested} keys tested`);
  const pName = corrections.length ? `p-value corrected for ${corrections.join(" and ")}` : "p-value";
  const what = result.window ? "contains a passage that scores that high" : "scores that high";
  const p = formatP(result.corrected_p_value);
  const a = formatAlpha(alpha);
  const prefix = result.verdict === "watermarked" ? "Watermarked" : "Not watermarked";
  const comparison = result.verdict === "watermarked" ? `below α = ${a}` : `not below α = ${a}`;
  return `${prefix}: ${evidence}; a text without this watermark ${what} with probability ${p} (${pName}), ${comparison}.`;
}

const VERDICT_LABELS = {
  watermarked: "Watermarked",
  not_watermarked: "Not watermarked",
  insufficient_evidence: "Too short to tell",
};

/** Renders a /detect answer for ``text`` into ``container`` (the Detect and Generate tabs share it). */
function renderDetection(container, result, text, alpha) {
  const parts = [
    h("div", { class: "verdict-row" },
      h("span", { class: `badge badge-${result.verdict}`, "data-verdict": result.verdict }, VERDICT_LABELS[result.verdict]),
      h("p", { class: "explanation" }, explanation(result, alpha))),
  ];
  const window = partialWindow(result);
  if (window) parts.push(h("p", { class: "window-note" }, windowNote(window)));
  parts.push(statistics(result, alpha));
  if (result.keys && result.keys.length > 1) parts.push(keysTable(result.keys));
  if (result.provenance) parts.push(provenanceSection(result, text, alpha));
  if (result.provenanceUnavailable) {
    parts.push(h("p", { class: "hint", id: "provenance-unavailable" },
      `Provenance was not searched; the watermark test alone is shown. The service said: ${result.provenanceUnavailable}`));
  }
  if (result.tokens && text !== null) {
    parts.push(h("h3", {}, "Tokens"), tokenLegend(result), tokenView(text, result));
  }
  if (result.tokens && result.num_scored_tokens > 0) {
    parts.push(h("h3", {}, "Evidence along the text"), evidencePlot(result, alpha));
  }
  container.replaceChildren(...parts);
}

function windowNote(window) {
  const span = window.char_start === null ? `tokens ${window.token_start}–${window.token_end}`
    : `characters ${window.char_start}–${window.char_end}`;
  return `The most significant passage: ${span} (outlined below), ${window.num_scored_tokens} scored tokens, ` +
    `p = ${formatP(window.p_value)}, or ${formatP(window.corrected_p_value)} corrected for ${window.num_windows} windows.`;
}

function statistics(result, alpha) {
  const rows = [
    ["Key", `${result.key_id} (${result.scheme})`],
    ["Scored tokens", `${result.num_scored_tokens} of ${result.num_tokens} (repeats and the first context are not scored)`],
  ];
  if (isKgw(result)) {
    const expected = result.gamma === null || result.gamma === undefined ? ""
      : `, ${formatNumber(result.gamma * result.num_scored_tokens)} expected (γ = ${result.gamma})`;
    rows.push(["Green tokens", result.num_green_tokens === null ? "–" : `${result.num_green_tokens}${expected}`]);
  } else {
    const expected = formatNumber(result.score_mean * result.num_scored_tokens);
    rows.push(["Score sum", result.score === null ? "–" : `${formatNumber(result.score, 2)}, ${expected} expected`]);
  }
  rows.push(
    ["z-score, whole text", result.z_score === null ? "–" : formatNumber(result.z_score, 2)],
    ["p-value, whole text", formatP(result.p_value)],
    ["p-value compared with α", `${formatP(result.corrected_p_value)} (α = ${formatAlpha(alpha)})`],
  );
  return h("dl", { class: "stats" }, rows.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
}

function keysTable(keys) {
  return h("table", { class: "data" },
    h("caption", {}, "Every key tested (Holm–Bonferroni corrected), most significant first"),
    h("thead", {}, h("tr", {}, ["key_id", "scheme", "verdict", "p-value", "corrected p-value"].map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, keys.map((key) => h("tr", {},
      h("td", {}, key.key_id), h("td", {}, key.scheme), h("td", {}, VERDICT_LABELS[key.verdict]),
      h("td", { class: "number" }, formatP(key.p_value)), h("td", { class: "number" }, formatP(key.corrected_p_value))))));
}

// ---------------------------------------------------------------- provenance

const DECIDED_BY = {
  watermark: "the watermark",
  provenance: "provenance (a close match among this tenant's generations)",
  both: "both the watermark and provenance",
};

function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

/** Scientific notation throughout, so the matches' p-values line up: 3.2e-41, 1.0e+0. */
function formatScientific(p) {
  return p === 0 ? "< 1e-300" : p.toExponential(1);
}

/** Unix seconds as the reader's local date and time. */
function localTime(seconds) {
  const date = new Date(seconds * 1000);
  return h("time", { datetime: date.toISOString() }, date.toLocaleString());
}

/** The provenance answer: the combined verdict, the closest generations (each erasable) and the best one beside
 * the text where the operator keeps generation texts. */
function provenanceSection(result, text, alpha) {
  const report = result.provenance;
  const combined = result.combined;
  const found = combined.verdict === "generated_here";
  const headline = found ? `Generated here — decided by ${DECIDED_BY[combined.decided_by]}.`
    : `Not found among this tenant's ${plural(report.num_vectors, "recorded piece", "recorded pieces")}.`;
  const comparison = found ? "below" : "not below";
  // combined.rule says which levels the server used (docs/PROVENANCE.md); only the reason is told here.
  let test = "The smaller of the watermark's and provenance's p-values, doubled (each test at α/2), is ";
  if (report.verdict === "insufficient_evidence") {
    test = "The text is too short for a provenance verdict, so the watermark is tested alone: its p-value is ";
  } else if (combined.rule === "watermark_at_alpha") {
    test = "Not even a copy could reach α/2 in a registry this size, so the watermark is tested alone: its p-value is ";
  }
  const reason = `${test}${formatP(combined.p_value)}, ${comparison} α = ${formatAlpha(alpha)}. ` +
    `${plural(report.num_pieces, "piece", "pieces")} of the text searched against ${plural(report.num_vectors, "recorded piece", "recorded pieces")}` +
    `${report.truncated ? " (a long text: pieces spread over it)" : ""}.`;
  const parts = [
    h("h3", {}, "Provenance"),
    h("div", { class: "verdict-row" },
      // Not .badge and .explanation: those name the watermark's verdict, which callers (and tests) select.
      h("span", { class: `pill pill-${combined.verdict}`, "data-verdict": combined.verdict }, found ? "Generated here" : "Not found"),
      h("p", { class: "combined-explanation", id: "provenance-verdict" }, h("strong", {}, headline), " ", reason)),
  ];
  if (report.matches.length) {
    const status = h("p", { class: "erase-status", id: "provenance-erase-status", role: "status" });
    const best = bestMatchView(report.matches[0], text);
    parts.push(matchesTable(report.matches, status, best), status, best);
  }
  return h("section", { class: "provenance", id: "provenance", "aria-label": "Provenance" }, parts);
}

function matchesTable(matches, status, best) {
  const body = h("tbody", {});
  const table = h("table", { class: "data", id: "provenance-matches" },
    h("caption", {}, "This tenant's closest generations, best first"),
    h("thead", {}, h("tr", {}, ["generation", "similarity", "p-value", "rare words", "rare-word p-value", "key", "created", ""]
      .map((name) => h("th", { scope: "col" }, name)))),
    body);
  matches.forEach((match, index) => {
    const erase = h("button", { type: "button", class: "secondary small", "aria-label": `Erase ${match.generation_id}` }, "Erase");
    const row = h("tr", { "data-generation-id": match.generation_id },
      h("td", {}, h("code", {}, match.generation_id)),
      h("td", { class: "number" }, match.similarity.toFixed(3)),
      h("td", { class: "number" }, formatScientific(match.p_value)),
      // rare words are evidence to read, not part of the verdict; null where the service keeps none
      h("td", { class: "number" }, match.rare_word_similarity === null ? "—" : match.rare_word_similarity.toFixed(3)),
      h("td", { class: "number" }, match.rare_word_p_value === null ? "—" : formatScientific(match.rare_word_p_value)),
      h("td", {}, match.key_id ?? "unwatermarked"),
      h("td", {}, localTime(match.created_at)),
      h("td", {}, erase));
    erase.addEventListener("click", () => eraseGeneration(match.generation_id, { row, erase, status, table, best: index === 0 ? best : null }));
    body.append(row);
  });
  return table;
}

/** DELETE /generations/{id}: on 204 the row goes (and the best match's view with it); a problem is shown as the service put it. */
async function eraseGeneration(generationId, { row, erase, status, table, best }) {
  erase.disabled = true;
  status.classList.remove("failed");
  status.textContent = `Erasing ${generationId}…`;
  try {
    await requestApi("DELETE", `generations/${encodeURIComponent(generationId)}`);
  } catch (problem) {
    erase.disabled = false;
    status.classList.add("failed");
    status.textContent = `Could not erase ${generationId}: ${problem instanceof ApiProblem ? problem.message : problem}`;
    return;
  }
  row.remove();
  best?.remove();
  if (!table.tBodies[0].rows.length) table.remove();
  status.textContent = `${generationId} erased: it is no longer in this tenant's registry (detect again for a fresh search).`;
}

/** The best match beside the text, where the operator keeps texts; else its similarity alone. */
function bestMatchView(match, text) {
  if (match.text === null || match.text === undefined) {
    return h("p", { class: "hint", id: "provenance-similarity-only" },
      `The closest generation, ${match.generation_id}, has a similarity of ${match.similarity.toFixed(3)} to your text ` +
      `(p = ${formatScientific(match.p_value)}). This operator does not keep generation texts, so it cannot be shown beside yours.`);
  }
  const column = (className, heading, passage) => h("div", { class: `side ${className}` },
    h("h4", {}, heading), h("div", { class: "passage", role: "region", tabindex: 0, "aria-label": heading }, passage));
  return h("div", { class: "side-by-side", id: "provenance-side-by-side" },
    column("side-yours", "Your text", text ?? ""),
    column("side-generation", `Generation ${match.generation_id}`, match.text));
}

function tokenLegend(result) {
  const mean = formatNumber(result.score_mean);
  const entries = isKgw(result)
    ? [["tok tok-green", "green", "green-list token (solid underline)"],
      ["tok tok-red", "red", "red-list token (wavy underline)"]]
    : [["tok tok-g3", "high", `score above ${mean}, its mean by chance: leans watermarked (darker: higher; solid underline)`],
      ["tok tok-r2", "low", `score below ${mean}: leans unwatermarked (wavy underline)`]];
  entries.push(["tok tok-unscored", "grey", "not scored: repeated n-gram or no full context (dotted)"]);
  return h("ul", { class: "legend", "aria-label": "Token colours" },
    entries.map(([className, sample, meaning]) => h("li", {}, h("span", { class: className }, sample), " ", meaning)));
}

/** A score's distance from its null mean in null sds: above 0 leans watermarked. Buckets, since styles are
 * classes; for Gumbel (mean 1, sd 1) they are the scores 4, 2, 1 and 0.3. */
function scoreClass(score, mean, sd) {
  const z = (score - mean) / sd;
  if (z >= 3) return "tok-g3";
  if (z >= 1) return "tok-g2";
  if (z >= 0) return "tok-g1";
  return z >= -0.7 ? "tok-r1" : "tok-r2";
}

function tokenSpan(text, token, result) {
  let className;
  let label;
  if (!token.scored) {
    className = "tok-unscored";
    label = "not scored: repeated n-gram or no full context";
  } else if (token.green !== null) {
    className = token.green ? "tok-green" : "tok-red";
    label = token.green ? "green" : "red";
  } else {
    className = scoreClass(token.score, result.score_mean, result.score_sd);
    const side = token.score >= result.score_mean ? "above" : "below";
    label = `score ${token.score.toFixed(2)} (${side} ${formatNumber(result.score_mean)})`;
  }
  return h("span", { class: `tok ${className}`, title: label, "data-index": token.index }, text);
}

/** The original text, each token highlighted; characters no token covers stay plain text. */
function tokenView(text, result) {
  // Focusable, so keyboard users can scroll a long text.
  const view = h("div", { class: "tokens", role: "region", tabindex: 0, "aria-label": "The text, token by token" });
  const window = partialWindow(result);
  let target = view;
  let windowElement = null;
  let cursor = 0;
  const emitPlain = (end) => {
    if (end > cursor) target.append(text.slice(cursor, end));
    cursor = Math.max(cursor, end);
  };
  for (const token of result.tokens) {
    if (token.char_start === null) continue;
    if (window && !windowElement && token.index >= window.token_start) {
      emitPlain(window.char_start);
      windowElement = h("span", {
        class: "window", role: "group", "aria-label": "most significant passage",
        "data-char-start": window.char_start, "data-char-end": window.char_end,
      });
      view.append(windowElement);
      target = windowElement;
    }
    if (windowElement && target === windowElement && token.index >= window.token_end) {
      emitPlain(window.char_end);
      target = view;
    }
    emitPlain(token.char_start);
    // Tokens of one multi-byte character share its span: the first one shows it.
    const start = Math.max(cursor, token.char_start);
    if (token.char_end > start) {
      target.append(tokenSpan(text.slice(start, token.char_end), token, result));
      cursor = token.char_end;
    }
  }
  if (windowElement && target === windowElement) {
    emitPlain(window.char_end);
    target = view;
  }
  emitPlain(text.length);
  return view;
}

// ---------------------------------------------------------------- the plot

/** Cumulative z after each scored token: (S_n − μn)/(σ√n), μ and σ a token's null mean and sd
 * (γ and √(γ(1−γ)) for KGW, 1 and 1 for Gumbel). */
function cumulativeZ(result) {
  const values = [];
  let n = 0;
  let sum = 0;
  for (const token of result.tokens) {
    if (!token.scored) continue;
    n += 1;
    sum += token.green === null ? token.score : Number(token.green);
    values.push((sum - result.score_mean * n) / (result.score_sd * Math.sqrt(n)));
  }
  return values;
}

/** Scored-token positions [start, end) of the window, for shading it on the plot. */
function windowPositions(result) {
  const window = partialWindow(result);
  if (!window) return null;
  let before = 0;
  let inside = 0;
  for (const token of result.tokens) {
    if (!token.scored) continue;
    if (token.index < window.token_start) before += 1;
    else if (token.index < window.token_end) inside += 1;
  }
  return [before, before + inside];
}

function niceTicks(low, high, count = 5) {
  const rough = (high - low) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
  const ticks = [];
  for (let value = Math.ceil(low / step) * step; value <= high + 1e-9; value += step) ticks.push(Number(value.toFixed(10)));
  return ticks;
}

function evidencePlot(result, alpha) {
  if (isKgw(result) && !(result.gamma > 0 && result.gamma < 1)) {
    return h("p", { class: "hint" }, "No plot: this key's green fraction γ is not reported.");
  }
  const values = cumulativeZ(result);
  // The decision compares a corrected p-value with α; correcting α instead gives the z the
  // whole text must reach on its own (Bonferroni bound of the window and key corrections).
  const correction = (result.window ? result.window.num_windows : 1) * Math.max(1, result.num_keys_tested);
  const threshold = -inverseNormal(alpha / correction);
  const width = 960;
  const height = 300;
  const margin = { left: 52, right: 16, top: 16, bottom: 44 };
  const innerWidth = width - margin.left - margin.right;
  const innerHeight = height - margin.top - margin.bottom;
  const dataLow = Math.min(-2, ...values);
  const dataHigh = Math.max(threshold + 1, ...values);
  const headroom = 0.06 * (dataHigh - dataLow); // so the line never runs along the frame
  const yLow = dataLow - headroom;
  const yHigh = dataHigh + headroom;
  const count = values.length;
  const x = (position) => margin.left + (count <= 1 ? 0 : ((position - 1) / (count - 1)) * innerWidth);
  const y = (value) => margin.top + ((yHigh - value) / (yHigh - yLow)) * innerHeight;

  const crossing = values.findIndex((value) => value >= threshold);
  const summary = `Cumulative z-score over ${count} scored tokens: it ends at ${formatNumber(values[count - 1], 1)}` +
    (crossing >= 0 ? `, first above the threshold ${formatNumber(threshold, 2)} at scored token ${crossing + 1}.`
      : `, never above the threshold ${formatNumber(threshold, 2)}.`);
  const plot = svg("svg", { class: "plot", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary });
  plot.append(svg("title", {}, summary));

  const span = windowPositions(result);
  if (span && span[1] > span[0]) {
    plot.append(svg("rect", {
      class: "plot-window", x: x(span[0] + 1), y: margin.top,
      width: Math.max(1, x(span[1]) - x(span[0] + 1)), height: innerHeight,
    }));
  }
  for (const tick of niceTicks(yLow, yHigh)) {
    plot.append(svg("line", { class: tick === 0 ? "plot-zero" : "plot-grid", x1: margin.left, x2: width - margin.right, y1: y(tick), y2: y(tick) }));
    plot.append(svg("text", { class: "plot-tick", x: margin.left - 6, y: y(tick) + 4, "text-anchor": "end" }, document.createTextNode(String(tick))));
  }
  for (const tick of niceTicks(1, Math.max(count, 2)).filter((t) => Number.isInteger(t) && t >= 1)) {
    plot.append(svg("text", { class: "plot-tick", x: x(tick), y: height - margin.bottom + 16, "text-anchor": "middle" }, document.createTextNode(String(tick))));
  }
  plot.append(
    svg("line", { class: "plot-axis", x1: margin.left, x2: margin.left, y1: margin.top, y2: height - margin.bottom }),
    svg("line", { class: "plot-axis", x1: margin.left, x2: width - margin.right, y1: height - margin.bottom, y2: height - margin.bottom }),
    svg("line", { class: "plot-threshold", x1: margin.left, x2: width - margin.right, y1: y(threshold), y2: y(threshold) }),
    svg("text", { class: "plot-label", x: width - margin.right - 4, y: y(threshold) - 6, "text-anchor": "end" },
      document.createTextNode(`threshold (normal approximation): z = ${formatNumber(threshold, 2)}`)),
    svg("polyline", { class: "plot-line", points: values.map((value, i) => `${x(i + 1).toFixed(1)},${y(value).toFixed(1)}`).join(" ") }),
    svg("text", { class: "plot-axis-label", x: margin.left + innerWidth / 2, y: height - 6, "text-anchor": "middle" },
      document.createTextNode("scored token position")),
    svg("text", { class: "plot-axis-label", x: 14, y: margin.top + innerHeight / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${margin.top + innerHeight / 2})` },
      document.createTextNode("cumulative z-score")),
  );
  const caption = span ? " The shaded band is the most significant passage." : "";
  return h("figure", { class: "plot-figure" }, plot,
    h("figcaption", { class: "hint" }, `How far the green count (or score sum) runs above chance as the text goes on, in standard deviations. ` +
      `The dashed line is the level the whole text must pass at α = ${formatAlpha(alpha)}${correction > 1 ? `, corrected for ${correction} tests` : ""}.${caption}`));
}

// ---------------------------------------------------------------- Detect tab

async function detect(event) {
  event.preventDefault();
  const text = $("detect-text").value;
  const alpha = Number($("detect-alpha").value || "0.0001");
  const body = { text, windows: $("detect-windows").checked, alpha };
  if ($("detect-all-keys").checked) body.key_ids = "all";
  else if (optionalText("detect-key-id")) body.key_id = optionalText("detect-key-id");
  if ($("detect-provenance").checked) body.provenance = true; // the form's input is always text
  await whileBusy("detect", "Detecting…", async () => {
    const result = await detectWithProvenance(body);
    renderDetection($("detect-result"), result, text, alpha);
  });
}

function acceptDroppedFiles(textarea) {
  textarea.addEventListener("dragover", (event) => {
    event.preventDefault();
    textarea.classList.add("drop-target");
  });
  textarea.addEventListener("dragleave", () => textarea.classList.remove("drop-target"));
  textarea.addEventListener("drop", async (event) => {
    event.preventDefault();
    textarea.classList.remove("drop-target");
    const file = event.dataTransfer.files[0];
    if (file) textarea.value = await file.text();
  });
  $("detect-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) textarea.value = await file.text();
  });
}

// ---------------------------------------------------------------- Generate tab

async function generate(event) {
  event.preventDefault();
  const body = {
    ...promptInput($("generate-prompt").value, $("generate-chat").checked),
    max_tokens: optionalNumber("generate-max-tokens"),
    temperature: optionalNumber("generate-temperature"),
    seed: optionalNumber("generate-seed"),
    key_id: optionalText("generate-key-id"),
  };
  const container = $("generate-result");
  await whileBusy("generate", "Generating on the engine… (several seconds on a CPU)", async (setStatus) => {
    const generation = await callApi("generate?watermark=true", body);
    setStatus("Detecting…");
    const alpha = 1e-4;
    const detection = await detectWithDetails({
      text: generation.text, key_id: generation.watermark.key_id, windows: true, alpha,
    });
    const mark = generation.watermark;
    const meta = h("p", { class: "generation-meta" },
      `Generated ${generation.usage.completion_tokens} tokens (finish: ${generation.finish_reason}) on ${generation.model}, ` +
      `watermarked with key ${mark.key_id} (${mark.scheme}${mark.gamma ? `, γ = ${mark.gamma}, δ = ${mark.delta}` : ""}). ` +
      "Detected from its text:");
    const send = h("button", { type: "button", class: "secondary" }, "Open in the Detect tab");
    send.addEventListener("click", () => {
      $("detect-text").value = generation.text;
      selectTab($("tab-detect"), true);
    });
    const detectionView = h("div", { class: "detection" });
    renderDetection(detectionView, detection, generation.text, alpha);
    const parts = [meta, detectionView, generationIdLine(generation.generation_id), h("div", { class: "actions" }, send)];
    container.replaceChildren(...parts.filter((part) => part !== null));
  });
}

/** The generation's id in the registry (a streamed generation carries it on its last chunk). */
function generationIdLine(generationId) {
  if (!generationId) return null;
  return h("p", { class: "hint", id: "generate-generation-id" }, "Generation id: ", h("code", {}, generationId),
    ". Detect with provenance finds this text, or a rewording of it, by this id; its Erase button removes it.");
}

// ---------------------------------------------------------------- Scores tab

function scoresTable(scores, caption) {
  return h("table", { class: "data" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ["method", "value", "bounds", "meaning"].map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, scores.map((score) => h("tr", {},
      h("td", {}, h("code", {}, score.method)),
      h("td", { class: "number" }, formatNumber(score.value, 4)),
      h("td", { class: "number" }, score.bounds ? `${formatNumber(score.bounds.lower, 3)} – ${formatNumber(score.bounds.upper, 3)}` : ""),
      h("td", {}, score.meaning)))));
}

async function scoreUncertainty(event) {
  event.preventDefault();
  const body = {
    ...promptInput($("uncertainty-prompt").value, $("uncertainty-chat").checked),
    response: optionalText("uncertainty-response"),
    samples: optionalNumber("uncertainty-samples"),
    similarity: $("uncertainty-similarity").value,
    max_tokens: optionalNumber("uncertainty-max-tokens"),
    seed: optionalNumber("uncertainty-seed"),
  };
  await whileBusy("uncertainty", "Scoring on the engine…", async () => {
    const result = await callApi("score/uncertainty", body);
    const parts = [
      h("p", {}, h("strong", {}, result.generated ? "The model's answer: " : "The answer scored: "), result.response ?? "(withheld)"),
      riskLine(result.risk),
      scoresTable(result.scores, `Uncertainty of the answer (${result.response_tokens} tokens); higher = more uncertain`),
    ];
    if (result.warnings.length) {
      parts.push(h("ul", { class: "warnings" }, result.warnings.map((warning) => h("li", {}, warning))));
    }
    if (result.samples.length) {
      const classes = result.semantic_classes || [];
      parts.push(h("h3", {}, "Samples"), h("ol", { class: "samples" },
        result.samples.map((sample, i) => h("li", {}, sample, classes.length ? h("span", { class: "hint" }, ` (meaning class ${classes[i]})`) : null))));
    }
    parts.push(costLine(result.cost));
    $("uncertainty-result").replaceChildren(...parts);
  });
}

/** The calibrated risk, as a percentage, and why it is not a probability when it is not. */
function riskLine(risk) {
  if (!risk) return null;
  return h("p", { class: "risk", "data-calibrated": String(risk.calibrated) },
    h("strong", {}, `Risk that ${risk.predicts}: ${formatNumber(100 * risk.value, 1)}%`),
    risk.calibrated ? "" : h("span", { class: "hint" }, ` (not calibrated: ${risk.reason})`));
}

function costLine(cost) {
  return h("p", { class: "hint" }, `Cost: ${cost.engine_requests} engine requests, ${cost.prompt_tokens} prompt tokens, ${cost.generated_tokens} generated tokens.`);
}

function consistencyMode() {
  return document.querySelector('input[name="consistency-mode"]:checked').value;
}

/** Shows the fields and method checkboxes of the selected mode. */
function showConsistencyMode() {
  const mode = consistencyMode();
  $("consistency-source-field").hidden = mode !== "reference";
  $("consistency-questions-field").hidden = mode !== "reference";
  $("consistency-prompt-field").hidden = mode !== "self";
  $("consistency-samples-field").hidden = mode !== "self";
  $("consistency-methods").replaceChildren(...CONSISTENCY_METHODS[mode].map((method) => {
    const id = `method-${method}`;
    return h("div", { class: "field checkbox" },
      h("input", { type: "checkbox", id, value: method, checked: DEFAULT_CONSISTENCY_METHODS.has(method) }),
      h("label", { for: id }, h("code", {}, method)));
  }));
}

async function scoreConsistency(event) {
  event.preventDefault();
  const mode = consistencyMode();
  const text = $("consistency-text").value;
  const methods = [...$("consistency-methods").querySelectorAll("input:checked")].map((input) => input.value);
  const body = { text, methods: methods.length ? methods : undefined, seed: optionalNumber("consistency-seed") };
  if (mode === "reference") {
    body.source = $("consistency-source").value;
    body.questions = optionalNumber("consistency-questions");
  } else {
    body.prompt = $("consistency-prompt").value;
    body.samples = optionalNumber("consistency-samples");
  }
  await whileBusy("consistency", "Scoring on the engine…", async () => {
    const result = await callApi("score/consistency", body);
    renderConsistency($("consistency-result"), result, text);
  });
}

function renderConsistency(container, result, text) {
  const methods = [...new Set(result.sentences.flatMap((sentence) => Object.keys(sentence.scores)))];
  const claims = result.sentences.flatMap((sentence) => sentence.claims);
  const parts = [riskLine(result.risk)];
  if (methods.length || claims.length) {
    const select = h("select", { id: "consistency-shade-method" }, methods.map((method) => h("option", { value: method }, method)));
    const view = h("div", { class: "sentences", role: "region", tabindex: 0, "aria-label": "The passage, sentence by sentence" });
    const legend = h("p", { class: "legend-scale" });
    const draw = () => drawSentences(view, legend, result, text, select.value || undefined);
    select.addEventListener("change", draw);
    if (methods.length) parts.push(h("div", { class: "field inline" }, h("label", { for: "consistency-shade-method" }, "Shade sentences by"), select));
    parts.push(legend, view);
    draw();
  }
  if (claims.length) {
    parts.push(h("h3", {}, "Claims the source does not support"), h("ul", { class: "claims" }, claims.map((claim) =>
      h("li", {}, h("mark", { class: `claim claim-${claim.kind}` }, claim.text), ` ${claim.kind}: ${claim.reason}`))));
  }
  parts.push(scoresTable(result.scores, "The whole passage; higher = less consistent"));
  if (result.warnings.length) {
    parts.push(h("h3", {}, "Warnings"), h("ul", { class: "warnings" }, result.warnings.map((warning) => h("li", {}, warning))));
  }
  if (result.samples.length) {
    parts.push(h("h3", {}, "The model's samples"), h("ol", { class: "samples" }, result.samples.map((sample) => h("li", {}, sample))));
  }
  parts.push(costLine(result.cost));
  container.replaceChildren(...parts.filter(Boolean));
}

/** A sentence's text with its unsupported claims marked; each mark's title gives the reason.
 * The API's offsets count code points, as Python does; JavaScript strings count UTF-16 units,
 * so the text is sliced as an array of code points (an emoji before a claim shifts nothing). */
function withClaims(sentence) {
  const chars = Array.from(sentence.text);
  const slice = (start, end) => chars.slice(start - sentence.start, end - sentence.start).join("");
  const pieces = [];
  let cursor = sentence.start;
  for (const claim of sentence.claims) {
    if (claim.start < cursor) continue; // overlapping claims: the first one marks the words
    if (claim.start > cursor) pieces.push(slice(cursor, claim.start));
    pieces.push(h("mark", { class: `claim claim-${claim.kind}`, title: `${claim.kind}: ${claim.reason}` }, slice(claim.start, claim.end)));
    cursor = claim.end;
  }
  if (cursor < sentence.end) pieces.push(slice(cursor, sentence.end));
  return pieces;
}

/** Each sentence shaded by its score for ``method``, scaled between the lowest and highest sentence. */
function drawSentences(view, legend, result, text, method) {
  const values = result.sentences.map((sentence) => sentence.scores[method]).filter((v) => v !== undefined);
  const low = Math.min(...values);
  const high = Math.max(...values);
  const shades = 5;
  const children = [];
  const chars = Array.from(text); // code points, as the API's offsets count them
  let cursor = 0;
  for (const sentence of result.sentences) {
    if (sentence.start > cursor) children.push(chars.slice(cursor, sentence.start).join(""));
    const value = sentence.scores[method];
    const level = value === undefined ? null : high > low ? Math.min(shades - 1, Math.floor(((value - low) / (high - low)) * shades)) : 0;
    const label = value === undefined ? "not scored" : formatNumber(value, 2);
    children.push(h("span", {
      class: `sentence ${level === null ? "shade-none" : `shade-${level}`}`, "data-score": value ?? "",
      title: method ? `${method}: ${label}` : "",
    }, ...withClaims(sentence), method ? h("span", { class: "sentence-score" }, label) : null));
    cursor = sentence.end;
  }
  if (cursor < chars.length) children.push(chars.slice(cursor).join(""));
  view.replaceChildren(...children);
  const meaning = result.scores.find((score) => score.method === method)?.meaning;
  if (!method) {
    legend.replaceChildren("Marked: claims the source does not support (hover for the reason).");
    return;
  }
  legend.replaceChildren(
    meaning ? h("span", {}, h("code", {}, method), `: ${meaning}. `) : "",
    "Lighter: better supported; darker: less supported (higher score). Scaled from ",
    h("span", { class: "sentence shade-0" }, formatNumber(low, 2)), " to ",
    h("span", { class: `sentence shade-${shades - 1}` }, formatNumber(high, 2)), ".");
}

// ---------------------------------------------------------------- tabs (WAI-ARIA tabs pattern)

function selectTab(tab, focus) {
  for (const other of document.querySelectorAll('[role="tab"]')) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
}

function setUpTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab, false));
    tab.addEventListener("keydown", (event) => {
      const index = tabs.indexOf(tab);
      const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      selectTab(tabs[(next + tabs.length) % tabs.length], true);
    });
  }
}

// ---------------------------------------------------------------- start

function setUp() {
  setUpTabs();
  const apiKey = $("api-key");
  apiKey.value = sessionStorage.getItem(API_KEY_STORAGE) || "";
  apiKey.addEventListener("input", () => sessionStorage.setItem(API_KEY_STORAGE, apiKey.value));
  $("detect-all-keys").addEventListener("change", (event) => { $("detect-key-id").disabled = event.target.checked; });
  acceptDroppedFiles($("detect-text"));
  $("detect-form").addEventListener("submit", detect);
  $("generate-form").addEventListener("submit", generate);
  $("uncertainty-form").addEventListener("submit", scoreUncertainty);
  $("consistency-form").addEventListener("submit", scoreConsistency);
  for (const radio of document.querySelectorAll('input[name="consistency-mode"]')) radio.addEventListener("change", showConsistencyMode);
  showConsistencyMode();
  document.body.dataset.ready = "true"; // for tests: the handlers are attached
}

setUp();
