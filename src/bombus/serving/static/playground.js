"use strict";
// The bombus playground: one page over the server's own routes (/v1/...), no other resources.
// Paths are relative so the page also works when the server runs below a path prefix.

const $ = (id) => document.getElementById(id);

// For each panel's task (a /v1/models "tasks" name): the kind of model and an example to suggest when none is served.
const SUGGESTIONS = {
  chat: { what: "a chat model (a causal LM with a chat template)", example: "HuggingFaceTB/SmolLM2-135M-Instruct" },
  completions: { what: "a causal language model", example: "openai-community/gpt2" },
  "fill-mask": { what: "a masked language model", example: "distilbert/distilbert-base-uncased" },
  classify: { what: "a sequence classification model",
              example: "distilbert/distilbert-base-uncased-finetuned-sst-2-english" },
  similar: { what: "a sentence embedding model", example: "sentence-transformers/all-MiniLM-L6-v2" },
};
let servedModels = [];

// ---- HTTP -------------------------------------------------------------------------------------------

function headers() {
  const key = $("api-key").value.trim();
  return { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) };
}

async function errorMessage(response) {
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = body.error?.message ?? body.detail ?? body;
    if (typeof detail !== "string") detail = JSON.stringify(detail);
  } catch { /* not JSON: keep the status text */ }
  const hint = response.status === 401 ? " (enter the server's API key at the top)" : "";
  return `${response.status} ${detail}${hint}`;
}

async function request(path, body, signal) {
  const init = body === undefined ? { headers: headers(), signal }
                                  : { method: "POST", headers: headers(), body: JSON.stringify(body), signal };
  const response = await fetch(path, init);
  if (!response.ok) throw new Error(await errorMessage(response));
  return response;
}

// Server-sent events: yields each `data:` payload parsed as JSON, until `data: [DONE]` or the end.
async function* sseData(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let match;
    while ((match = /\r?\n\r?\n/.exec(buffer))) {
      const event = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      const data = event.split(/\r?\n/).filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
      if (!data) continue; // a comment or keep-alive
      if (data === "[DONE]") return;
      const payload = JSON.parse(data);
      if (payload.error) throw new Error(payload.error.message ?? JSON.stringify(payload.error));
      yield payload;
    }
  }
}

// ---- Panels and their state -----------------------------------------------------------------------

function setStatus(panel, text, isError = false) {
  const status = panel.querySelector(".run-status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function setBusy(panel, controller) {
  for (const button of panel.querySelectorAll("button[type=submit], .idle-only")) button.disabled = Boolean(controller);
  // Screen readers announce a streamed answer once, when it is complete, not at every token.
  panel.querySelector("[aria-live]").setAttribute("aria-busy", String(Boolean(controller)));
  const stop = panel.querySelector(".stop");
  if (!stop) return;
  stop.disabled = !controller;
  stop.onclick = controller ? () => controller.abort() : null;
}

function sampling() {
  const settings = {
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    max_tokens: Number($("max-tokens").value),
  };
  if ($("seed").value !== "") settings.seed = Number($("seed").value);
  return settings;
}

// Streams a completion or chat completion, handing each piece of text to `onText`.
async function streamText(panel, path, body, onText) {
  const controller = new AbortController();
  setBusy(panel, controller);
  setStatus(panel, "Generating…");
  const started = performance.now();
  let pieces = 0, finish = "";
  try {
    const response = await request(path, { ...body, ...sampling(), stream: true }, controller.signal);
    for await (const chunk of sseData(response)) {
      const choice = chunk.choices?.[0];
      const text = choice?.delta?.content ?? choice?.text ?? "";
      if (text) { pieces += 1; onText(text); }
      if (choice?.finish_reason) finish = choice.finish_reason;
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus(panel, `Done: ${pieces} chunks in ${seconds} s${finish ? ` (${finish})` : ""}.`);
    return true;
  } catch (error) {
    if (controller.signal.aborted) { setStatus(panel, "Stopped."); return true; }
    setStatus(panel, `Error: ${error.message}`, true);
    return false;
  } finally {
    setBusy(panel, null);
  }
}

async function runTask(panel, task, body) {
  const submit = panel.querySelector("button[type=submit]");
  submit.disabled = true;
  setStatus(panel, "Running…");
  try {
    const response = await request(`v1/${task}`, body);
    const { outputs } = await response.json();
    setStatus(panel, "");
    return outputs;
  } catch (error) {
    setStatus(panel, `Error: ${error.message}`, true);
    return null;
  } finally {
    submit.disabled = false;
  }
}

function scoreRow(label, score, detail) {
  const row = document.createElement("div");
  row.className = "score";
  const text = document.createElement("span");
  text.className = "text";
  const strong = document.createElement("strong");
  strong.textContent = label;
  text.append(strong);
  if (detail) text.append(` ${detail}`);
  const meter = document.createElement("span");
  meter.className = "meter";
  meter.style.width = `${Math.max(0, Math.min(1, score)) * 8}rem`;
  meter.setAttribute("aria-hidden", "true");
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = score.toFixed(3);
  row.append(text, meter, value);
  return row;
}

function listItems(list, rows) {
  list.replaceChildren(...rows.map((row) => {
    const item = document.createElement("li");
    item.append(row);
    return item;
  }));
}

function lines(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean);
}

// ---- Chat ---------------------------------------------------------------------------------------------

const chatHistory = [];

function chatEntry(role, text) {
  const item = document.createElement("li");
  item.className = role;
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = role === "user" ? "You" : "Model";
  const content = document.createElement("span");
  content.className = "content";
  content.textContent = text;
  item.append(who, content);
  $("chat-log").append(item);
  return content;
}

async function sendChat(event) {
  event.preventDefault();
  const panel = $("panel-chat");
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || panel.querySelector("button[type=submit]").disabled) return;
  input.value = "";
  chatHistory.push({ role: "user", content: text });
  const userEntry = chatEntry("user", text);
  const reply = chatEntry("assistant", "");
  const system = $("chat-system").value.trim();
  const messages = [...(system ? [{ role: "system", content: system }] : []), ...chatHistory];
  let answer = "";
  const ok = await streamText(panel, "v1/chat/completions", { model: $("chat-model").value, messages }, (piece) => {
    answer += piece;
    reply.textContent = answer;
    reply.parentElement.scrollIntoView({ block: "nearest" });
  });
  if (ok) {
    chatHistory.push({ role: "assistant", content: answer });
  } else { // keep the history consistent: take the failed turn back and return the text to the box
    chatHistory.pop();
    userEntry.parentElement.remove();
    reply.parentElement.remove();
    input.value = text;
  }
  input.focus();
}

// ---- Completion ---------------------------------------------------------------------------------------

async function sendCompletion(event) {
  event.preventDefault();
  const panel = $("panel-completion");
  const prompt = $("completion-prompt").value;
  if (!prompt.trim() || panel.querySelector("button[type=submit]").disabled) return;
  const output = $("completion-output");
  const shown = document.createElement("span");
  shown.className = "prompt";
  shown.textContent = prompt;
  const generated = document.createElement("strong");
  output.replaceChildren(shown, generated);
  await streamText(panel, "v1/completions", { model: $("completion-model").value, prompt },
                   (piece) => { generated.textContent += piece; });
}

// ---- Encoder tasks ------------------------------------------------------------------------------------

async function sendFillMask(event) {
  event.preventDefault();
  const outputs = await runTask($("panel-fill-mask"), "fill-mask",
                                { model: $("fill-mask-model").value, inputs: $("fill-mask-input").value });
  if (!outputs) return;
  const result = Array.isArray(outputs) ? outputs[0] : outputs;
  listItems($("fill-mask-output"),
            result.predictions.map((p) => scoreRow(p.token.trim() || p.token, p.score, `— ${p.sequence}`)));
}

async function sendClassify(event) {
  event.preventDefault();
  const texts = lines($("classify-input").value);
  if (!texts.length) return;
  const outputs = await runTask($("panel-classify"), "classify", { model: $("classify-model").value, inputs: texts });
  if (!outputs) return;
  $("classify-output").replaceChildren(...texts.map((text, i) => {
    const block = document.createElement("div");
    block.className = "result";
    const heading = document.createElement("h3");
    heading.textContent = text;
    const list = document.createElement("ol");
    list.className = "scores";
    listItems(list, outputs[i].predictions.map((p) => scoreRow(p.label, p.score)));
    block.append(heading, list);
    return block;
  }));
}

async function sendSimilar(event) {
  event.preventDefault();
  const corpus = lines($("similar-corpus").value);
  if (!corpus.length) return;
  const outputs = await runTask($("panel-similar"), "similar", {
    model: $("similar-model").value,
    inputs: { query: $("similar-query").value, corpus, top_k: Number($("similar-top-k").value) },
  });
  if (!outputs) return;
  const result = Array.isArray(outputs) ? outputs[0] : outputs;
  listItems($("similar-output"), result.matches.map((m) => scoreRow(m.text, m.score)));
}

// ---- Models -----------------------------------------------------------------------------------------

function fillPickers() {
  for (const panel of document.querySelectorAll("[role=tabpanel]")) {
    const task = panel.dataset.task;
    const offered = servedModels.filter((m) => (m.tasks ?? []).includes(task));
    const picker = panel.querySelector("select.model");
    const previous = picker.value;
    picker.replaceChildren(...offered.map((m) => new Option(m.id, m.id, false, m.id === previous)));
    const missing = panel.querySelector(".missing");
    missing.hidden = offered.length > 0;
    panel.querySelector("form").hidden = offered.length === 0;
    if (!offered.length) {
      const command = document.createElement("code");
      command.textContent = `bombus serve --model ${SUGGESTIONS[task].example}`;
      missing.replaceChildren(`No served model offers ${task}. Start the server with ${SUGGESTIONS[task].what} `
        + "(repeat --model for each model to serve), for example: ", command);
    }
  }
}

async function loadModels() {
  const status = $("server-status");
  try {
    const response = await request("v1/models");
    servedModels = (await response.json()).data ?? [];
    status.textContent = `Serving ${servedModels.length} model${servedModels.length === 1 ? "" : "s"}: `
      + servedModels.map((m) => m.id).join(", ");
    status.classList.remove("error");
  } catch (error) {
    servedModels = [];
    status.textContent = `Cannot list the models: ${error.message}`;
    status.classList.add("error");
  }
  fillPickers();
}

// ---- Tabs (WAI-ARIA tabs pattern: arrows, Home and End move between tabs) -----------------------------

function selectTab(tab, focus = false) {
  for (const other of document.querySelectorAll("[role=tab]")) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
  const panel = $(tab.getAttribute("aria-controls"));
  document.querySelector("main").classList.toggle("no-settings", !panel.hasAttribute("data-generates"));
  history.replaceState(null, "", `#${tab.id.slice(4)}`);
  if (focus) tab.focus();
}

function onTabKey(event) {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  const at = tabs.indexOf(event.currentTarget);
  const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[event.key];
  if (next === undefined) return;
  event.preventDefault();
  selectTab(tabs[(next + tabs.length) % tabs.length], true);
}

// ---- Wiring -----------------------------------------------------------------------------------------

function init() {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", onTabKey);
  }
  const tabOfHash = () => {
    const tab = $(`tab-${location.hash.slice(1)}`);
    return tab?.getAttribute("role") === "tab" ? tab : null;
  };
  selectTab(tabOfHash() ?? $("tab-chat"));
  window.addEventListener("hashchange", () => { if (tabOfHash()) selectTab(tabOfHash()); });

  for (const id of ["temperature", "top-p"]) {
    $(id).addEventListener("input", () => { $(`${id}-value`).textContent = $(id).value; });
    $(`${id}-value`).textContent = $(id).value;
  }
  const key = $("api-key");
  key.value = sessionStorage.getItem("bombus-api-key") ?? "";
  key.addEventListener("change", () => { sessionStorage.setItem("bombus-api-key", key.value); loadModels(); });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    key.dispatchEvent(new Event("change"));
  });

  $("chat-form").addEventListener("submit", sendChat);
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) sendChat(event);
  });
  $("chat-clear").addEventListener("click", () => {
    chatHistory.length = 0;
    $("chat-log").replaceChildren();
    setStatus($("panel-chat"), "");
  });
  $("completion-form").addEventListener("submit", sendCompletion);
  $("completion-prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) sendCompletion(event);
  });
  $("fill-mask-form").addEventListener("submit", sendFillMask);
  $("classify-form").addEventListener("submit", sendClassify);
  $("similar-form").addEventListener("submit", sendSimilar);
  loadModels();
}

init();
