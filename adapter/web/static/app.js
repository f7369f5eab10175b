// becare validation page. Plain JavaScript, no build step, no external resources.
// Everything that comes from the user or the server reaches the DOM through textContent only:
// issue messages quote user data, so innerHTML is never used.
"use strict";

(() => {
  const LANGS = ["en", "fr", "nl", "de"];
  const RULE_SYSTEM = "https://becare.dev/fhir/CodeSystem/rule";
  const EXT = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-";
  const SEVERITY_ORDER = { fatal: 0, error: 1, warning: 2, information: 3 };

  const state = {
    lang: "en",
    texts: {},          // lang -> key -> text (i18n.json)
    rules: {},          // lang -> {version, regions, byId}
    explanations: new Map(), // "lang:RULE-ID" -> promise of GET /rules/{id} (with the example)
    validated: false,   // once something was validated, a language or region change re-validates
    outcomeText: null,  // the server's OperationOutcome exactly as received, for download
    seq: 0,             // ignores answers to requests that a newer one replaced
    hiddenSeverities: new Set(), // severities the user unticked in the filter
    counts: {},         // issues per severity of the shown result
  };

  const $ = (id) => document.getElementById(id);

  function t(key, params) {
    const table = state.texts[state.lang] || {};
    let text = table[key] ?? (state.texts.en || {})[key] ?? key;
    for (const [name, value] of Object.entries(params || {})) {
      text = text.split("{" + name + "}").join(String(value));
    }
    return text;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function initialLang() {
    const asked = new URLSearchParams(location.search).get("lang");
    const candidates = [asked, ...(navigator.languages || [navigator.language])];
    for (const c of candidates) {
      const primary = String(c || "").toLowerCase().split("-")[0];
      if (LANGS.includes(primary)) return primary;
    }
    return "en";
  }

  // -- texts ---------------------------------------------------------------------------------
  function applyTexts() {
    document.documentElement.lang = state.lang;
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.placeholder = t(node.dataset.i18nPlaceholder);
    }
    const rules = state.rules[state.lang];
    if (rules) {
      for (const option of $("region").options) {
        const region = rules.regions.find((r) => r.id === option.value);
        if (region) option.textContent = region.label;
      }
    }
  }

  async function loadRules(lang) {
    if (state.rules[lang]) return state.rules[lang];
    const response = await fetch("/rules?lang=" + encodeURIComponent(lang), {
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error("rules " + response.status);
    const data = await response.json();
    const byId = new Map(data.rules.map((r) => [r.id, r]));
    state.rules[lang] = { version: data.version, regions: data.regions, byId };
    return state.rules[lang];
  }

  async function setLang(lang) {
    state.lang = LANGS.includes(lang) ? lang : "en";
    $("lang").value = state.lang;
    try {
      await loadRules(state.lang);
    } catch (_err) {
      // The page still works without explanations; each issue then says so.
    }
    applyTexts();
    if (state.validated) await validate($("content").value);
    else document.body.dataset.lang = state.lang;
  }

  // -- input ---------------------------------------------------------------------------------
  function mediaType(text) {
    const start = text.replace(/^\uFEFF/, "").trimStart();
    if (start.startsWith("<")) return "application/fhir+xml";
    if (start.startsWith("{")) return "application/fhir+json";
    return ""; // neither: let the service sniff it and explain what it found
  }

  async function readFile(file) {
    try {
      const text = await file.text();
      $("content").value = text;
      await validate(text);
    } catch (_err) {
      showError(t("error.file"), []);
    }
  }

  // -- validation ----------------------------------------------------------------------------
  async function validate(text) {
    if (!text || !text.trim()) {
      showError(t("error.empty"), []);
      return;
    }
    const seq = ++state.seq;
    const region = $("region").value;
    const url = "/fhir/$validate" + (region ? "?region=" + encodeURIComponent(region) : "");
    const headers = { Accept: "application/fhir+json", "Accept-Language": state.lang };
    const key = $("apikey").value.trim();
    if (key) headers["X-API-Key"] = key;
    const type = mediaType(text);
    hideError();
    setStatus(t("status.validating"), "busy");
    const started = performance.now();
    let response;
    let body;
    try {
      response = await fetch(url, { method: "POST", headers, body: new Blob([text], { type }) });
      body = await response.text();
    } catch (_err) {
      if (seq !== state.seq) return;
      setStatus("", "error");
      showError(t("error.network"), []);
      return;
    }
    if (seq !== state.seq) return;
    const elapsed = Math.round(performance.now() - started);
    let outcome = null;
    try {
      outcome = JSON.parse(body);
    } catch (_err) {
      outcome = null;
    }
    state.validated = true;
    if (response.status !== 200 || !outcome || outcome.resourceType !== "OperationOutcome") {
      setStatus("", "error");
      const title = response.status === 401 ? t("error.auth")
        : response.status === 403 ? t("error.forbidden")
        : t("error.http", { status: response.status });
      const details = outcome && Array.isArray(outcome.issue)
        ? outcome.issue.map((i) => (i.details && i.details.text) || i.diagnostics || "").filter(Boolean)
        : [];
      showError(title, details);
      return;
    }
    state.outcomeText = body;
    render(outcome, text);
    setStatus(t("status.done", { ms: elapsed }), "done");
  }

  function setStatus(text, kind) {
    $("status").textContent = text;
    document.body.dataset.state = kind;
    document.body.dataset.lang = state.lang;
  }

  function showError(title, details) {
    state.outcomeText = null;
    $("results").hidden = true;
    $("error-title").textContent = title;
    const list = $("error-details");
    list.replaceChildren(...details.map((d) => el("li", null, d)));
    $("error").hidden = false;
    document.body.dataset.state = "error";
    document.body.dataset.lang = state.lang;
  }

  function hideError() {
    $("error").hidden = true;
  }

  // -- results -------------------------------------------------------------------------------
  function ext(issue, name) {
    const found = (issue.extension || []).find((e) => e.url === EXT + name);
    return found ? found.valueInteger ?? found.valueString : undefined;
  }

  function ruleId(issue) {
    const coding = (issue.details && issue.details.coding) || [];
    const hit = coding.find((c) => c.system === RULE_SYSTEM);
    return hit ? hit.code : null;
  }

  const MESSAGE_ID = "http://hl7.org/fhir/StructureDefinition/operationoutcome-message-id";
  const SUPPRESSED = "https://becare.dev/fhir/StructureDefinition/ext-suppressed";

  function messageId(issue) {
    const found = (issue.extension || []).find((e) => e.url === MESSAGE_ID);
    return found ? found.valueString : "";
  }

  // A severity the page does not know is shown as an error: fail closed, never quietly demoted.
  function severityOf(issue) {
    return Object.hasOwn(SEVERITY_ORDER, issue.severity) ? issue.severity : "error";
  }

  function messageText(issue) {
    return (issue.details && issue.details.text) || issue.diagnostics || "";
  }

  function expressionsOf(issue) {
    return issue.expression || issue.location || [];
  }

  // Two issues are one finding at two places when everything but the place is equal, the message
  // text and the suppression that matched included: messages quote the offending value, and
  // folding two values would hide one (the same rule as the text output, adapter/output/fold.py).
  function foldKey(issue) {
    const suppressed = (issue.extension || []).find((e) => e.url === SUPPRESSED);
    return JSON.stringify([
      severityOf(issue), issue.code || "", ruleId(issue) || messageId(issue), messageText(issue),
      suppressed ? suppressed.extension : null,
    ]);
  }

  // Worst first (fatal, error, warning, information), then the service's order, which is document
  // order; identical findings folded at their first place.
  function orderAndFold(issues) {
    const ordered = issues
      .map((issue, index) => ({ issue, index }))
      .sort((a, b) => SEVERITY_ORDER[severityOf(a.issue)] - SEVERITY_ORDER[severityOf(b.issue)]
        || a.index - b.index)
      .map((x) => x.issue);
    const folds = new Map();
    for (const issue of ordered) {
      const key = foldKey(issue);
      if (!folds.has(key)) folds.set(key, []);
      folds.get(key).push(issue);
    }
    return [...folds.values()];
  }

  // Names each Bundle entry ("CareTeam/team-1") from the content itself, JSON or XML.
  function entryNames(text) {
    const names = new Map();
    try {
      if (mediaType(text) === "application/fhir+json") {
        const data = JSON.parse(text);
        (data.entry || []).forEach((entry, i) => {
          const res = entry && entry.resource;
          if (res && res.resourceType) names.set(i, res.resourceType + (res.id ? "/" + res.id : ""));
        });
      } else if (mediaType(text) === "application/fhir+xml") {
        const doc = new DOMParser().parseFromString(text, "application/xml");
        const entries = [...doc.documentElement.children].filter((c) => c.localName === "entry");
        entries.forEach((entry, i) => {
          const holder = [...entry.children].find((c) => c.localName === "resource");
          const res = holder && holder.firstElementChild;
          if (!res) return;
          const id = [...res.children].find((c) => c.localName === "id");
          const value = id && id.getAttribute("value");
          names.set(i, res.localName + (value ? "/" + value : ""));
        });
      }
    } catch (_err) {
      // The validator already reported why the content is broken; issues keep their paths.
    }
    return names;
  }

  function resourceName(issue, names) {
    const entry = /^Bundle\.entry\[(\d+)\]/.exec(expressionsOf(issue)[0] || "");
    return entry ? names.get(Number(entry[1])) : undefined;
  }

  function render(outcome, text) {
    const issues = Array.isArray(outcome.issue) ? outcome.issue : [];
    const counts = { fatal: 0, error: 0, warning: 0, information: 0 };
    for (const issue of issues) counts[severityOf(issue)] += 1;
    const version = ((outcome.meta && outcome.meta.tag) || [])
      .filter((tag) => String(tag.system || "").endsWith("ext-rulebook-version"))
      .map((tag) => tag.code)[0];
    const verdict = counts.fatal + counts.error > 0 ? t("summary.invalid") : t("summary.valid");
    const summary = $("summary");
    summary.replaceChildren(
      el("strong", counts.fatal + counts.error > 0 ? "bad" : "good", verdict),
      document.createTextNode(" " + t("summary.counts", {
        errors: counts.fatal + counts.error, warnings: counts.warning, information: counts.information,
      })),
    );
    if (version) summary.append(document.createTextNode(" " + t("summary.rulebook", { version })));

    const names = entryNames(text);
    const folds = orderAndFold(issues);
    const container = $("groups");
    container.replaceChildren();
    if (issues.length === 0) container.append(el("p", "muted", t("results.none")));
    // One section per severity, worst first, so the filter hides or shows a whole section.
    for (const severity of Object.keys(SEVERITY_ORDER)) {
      const mine = folds.filter((fold) => severityOf(fold[0]) === severity);
      if (mine.length === 0) continue;
      const section = el("section", "group");
      section.dataset.severity = severity;
      const heading = el("h3", null, t("group." + severity));
      heading.append(el("span", "count", t("group.count", { n: counts[severity] })));
      section.append(heading);
      const list = el("ul", "issues");
      for (const fold of mine) {
        list.append(fold.length > 1 ? renderFold(fold, names) : renderIssue(fold[0], names));
      }
      section.append(list);
      container.append(section);
    }
    renderFilter(counts);
    $("results").hidden = false;
  }

  // -- severity filter: one checkbox per severity present; the choice outlives re-validation ----
  function renderFilter(counts) {
    state.counts = counts;
    const boxes = $("filter-boxes");
    boxes.replaceChildren();
    for (const severity of Object.keys(SEVERITY_ORDER)) {
      if (!counts[severity]) continue;
      const label = el("label", "filter sev-" + severity);
      const box = document.createElement("input");
      box.type = "checkbox";
      box.dataset.severity = severity;
      box.checked = !state.hiddenSeverities.has(severity);
      box.addEventListener("change", () => {
        if (box.checked) state.hiddenSeverities.delete(severity);
        else state.hiddenSeverities.add(severity);
        applyFilter();
      });
      label.append(box, el("span", null, t("filter." + severity, { n: counts[severity] })));
      boxes.append(label);
    }
    $("filter").hidden = boxes.childElementCount === 0;
    applyFilter();
  }

  function applyFilter() {
    let hidden = 0;
    for (const section of $("groups").querySelectorAll("section.group[data-severity]")) {
      section.hidden = state.hiddenSeverities.has(section.dataset.severity);
      if (section.hidden) hidden += state.counts[section.dataset.severity] || 0;
    }
    const note = $("filtered");
    note.textContent = hidden ? t("filter.hidden", { n: hidden }) : "";
    note.hidden = hidden === 0;
  }

  // -- one finding ---------------------------------------------------------------------------
  function issueItem(issue, count) {
    const severity = severityOf(issue);
    const item = el("li", "issue sev-" + severity);
    const head = el("div", "issue-head");
    head.append(el("span", "badge", t("severity." + severity)));
    if (count > 1) {
      const times = el("span", "times", t("fold.times", { n: count }));
      times.title = t("fold.times.label", { n: count });
      head.append(times);
    }
    const rid = ruleId(issue);
    if (rid) {
      item.dataset.rule = rid;
      head.append(el("code", "rule-id", rid));
    }
    item.append(head);
    item.append(el("p", "msg", messageText(issue)));
    return item;
  }

  // Line and column, then the resource the place is in ("in CareTeam/team-1").
  function appendPlace(node, issue, names) {
    const line = ext(issue, "line");
    const col = ext(issue, "col");
    if (line !== undefined) {
      node.append(el("span", "linecol", " " + t("loc.line", { line, col: col ?? "?" })));
    }
    const name = resourceName(issue, names);
    if (name) node.append(el("span", "resource", " " + t("loc.resource", { name })));
  }

  function renderIssue(issue, names) {
    const item = issueItem(issue, 1);
    const where = el("p", "loc");
    const expressions = expressionsOf(issue);
    if (expressions.length) {
      where.append(el("span", "label", t("loc.label") + " "));
      where.append(el("code", "expr", expressions.join(", ")));
    }
    appendPlace(where, issue, names);
    if (where.childNodes.length) item.append(where);
    const rid = ruleId(issue);
    if (rid) item.append(renderRule(rid));
    return item;
  }

  // A finding made at several places: one row with the count, its places in a list that is built
  // when first opened (a bundle of thousands of resources without narrative stays quick).
  function renderFold(fold, names) {
    const item = issueItem(fold[0], fold.length);
    item.classList.add("folded");
    item.dataset.count = String(fold.length);
    const box = el("details", "locations");
    box.append(el("summary", null, t("fold.locations", { n: fold.length })));
    const list = el("ol", "loc-list");
    box.append(list);
    box.addEventListener("toggle", () => {
      if (!box.open || list.childElementCount) return;
      for (const issue of fold) {
        const place = el("li", "loc-item");
        place.append(el("code", "expr", expressionsOf(issue).join(", ") || t("loc.document")));
        appendPlace(place, issue, names);
        list.append(place);
      }
    });
    item.append(box);
    const rid = ruleId(fold[0]);
    if (rid) item.append(renderRule(rid));
    return item;
  }

  function renderRule(rid) {
    const box = el("details", "explain");
    const rules = state.rules[state.lang];
    const rule = rules && rules.byId.get(rid);
    if (!rule) {
      box.append(el("summary", null, t("rule.title", { id: rid, title: "" }).replace(/[\s:]+$/, "")));
      box.append(el("p", "muted", t("rule.unknown")));
      return box;
    }
    box.append(el("summary", null, t("rule.title", { id: rid, title: rule.title })));
    const facts = el("dl");
    const add = (label, value) => {
      facts.append(el("dt", null, label));
      const dd = el("dd");
      if (value instanceof Node) dd.append(value);
      else dd.textContent = value;
      facts.append(dd);
    };
    const severityText = (s) => t("severity." + s);
    if (rule.regional) {
      const list = el("ul", "regions");
      for (const region of rules.regions) {
        list.append(el("li", null, region.label + ": " + severityText(rule.severity[region.id])));
      }
      add(t("rule.severity"), list);
    } else {
      add(t("rule.severity"), severityText(rule.severity[rules.regions[0].id]));
    }
    add(t("rule.fix"), rule.fix);
    add(t("rule.source"), rule.source + " (" + rule.lines + ")");
    box.append(facts);
    // The breaking example is computed by the service (it runs the rule's sample): fetched the
    // first time the explanation is opened, not for every issue of every validation.
    const example = el("div", "example");
    example.hidden = true;
    box.append(example);
    box.addEventListener("toggle", () => {
      if (box.open && !example.dataset.state) showExample(rid, example);
    });
    return box;
  }

  function loadExplanation(rid, lang) {
    const key = lang + ":" + rid;
    if (!state.explanations.has(key)) {
      const url = "/rules/" + encodeURIComponent(rid) + "?lang=" + encodeURIComponent(lang);
      const answer = fetch(url, { headers: { Accept: "application/json" } }).then((response) => {
        if (!response.ok) throw new Error("rule " + response.status);
        return response.json();
      });
      answer.catch(() => state.explanations.delete(key)); // a failure is asked again next time
      state.explanations.set(key, answer);
    }
    return state.explanations.get(key);
  }

  async function showExample(rid, box) {
    box.dataset.state = "loading";
    box.hidden = false;
    box.replaceChildren(el("p", "muted", t("rule.example.loading")));
    try {
      const data = await loadExplanation(rid, state.lang);
      renderExample(box, data.example);
      box.dataset.state = data.example ? "shown" : "none";
    } catch (_err) {
      box.replaceChildren(el("p", "muted", t("rule.example.error")));
      box.dataset.state = ""; // opening the explanation again retries
    }
  }

  function renderExample(box, example) {
    if (!example) {
      box.replaceChildren(el("p", "muted", t("rule.example.none")));
      return;
    }
    const title = el("p", "example-title", t("rule.example") + " ");
    title.append(el("span", "muted", "(" + example.sample + ")"));
    const facts = el("dl");
    const where = el("dd");
    where.append(el("code", "ex-location", example.location));
    facts.append(el("dt", null, t("rule.example.location")), where);
    facts.append(el("dt", null, t("rule.example.message")), el("dd", "ex-message", example.message));
    const text = example.fragment_text || JSON.stringify(example.fragment, null, 2) || "";
    box.replaceChildren(title, facts, el("pre", "ex-fragment", text));
  }

  // -- download ------------------------------------------------------------------------------
  function download() {
    if (!state.outcomeText) return;
    const blob = new Blob([state.outcomeText], { type: "application/fhir+json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "operation-outcome.json";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  // -- wiring --------------------------------------------------------------------------------
  async function start() {
    try {
      const response = await fetch("/ui/i18n.json");
      state.texts = await response.json();
    } catch (_err) {
      state.texts = {};
    }
    $("lang").addEventListener("change", (e) => setLang(e.target.value));
    $("validate").addEventListener("click", () => validate($("content").value));
    $("file").addEventListener("change", (e) => {
      const file = e.target.files && e.target.files[0];
      if (file) readFile(file);
    });
    $("region").addEventListener("change", () => {
      if (state.validated) validate($("content").value);
    });
    $("download").addEventListener("click", download);
    $("auth-form").addEventListener("submit", (e) => {
      e.preventDefault(); // Enter in the key field validates; nothing is ever posted as a form
      validate($("content").value);
    });
    $("clear").addEventListener("click", () => {
      $("content").value = "";
      $("file").value = "";
      state.validated = false;
      state.outcomeText = null;
      $("results").hidden = true;
      hideError();
      setStatus("", "idle");
    });
    await setLang(initialLang());
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", start);
})();
