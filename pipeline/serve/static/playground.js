// folio playground: run one prompt and seed against two models through /v1/completions with
// stream: true, and show each column's text as its server-sent events arrive.
"use strict";

const $ = (id) => document.getElementById(id);

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value;
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function getJSON(path) {
  const response = await fetch(path, { headers: headers() });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

async function loadChoices() {
  const health = await getJSON("/health");
  $("key-label").hidden = !health.auth;
  if (health.auth && !$("api-key").value) {
    $("served").textContent = "— enter the server's API key";
    return;
  }
  const info = await getJSON("/v1/playground/versions");
  $("served").textContent = "— serving " + info.served + (info.follows ? " (@" + info.follows + ")" : "");
  for (const [id, preferred] of [["model-a", null], ["model-b", info.choices[0]]]) {
    const select = $(id);
    select.replaceChildren();
    const served = new Option("served: " + info.served + (info.follows ? " (@" + info.follows + ")" : ""), "");
    select.add(served);
    for (const choice of info.choices) select.add(new Option(choice.label, choice.id));
    if (preferred && preferred.id !== info.served) select.value = preferred.id;
  }
}

function request(model) {
  const body = {
    prompt: $("prompt").value,
    max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    seed: Number($("seed").value),
    stream: true,
    stream_options: { include_usage: true },
  };
  if ($("top-k").value) body.top_k = Number($("top-k").value);
  const stop = $("stop").value.replace(/\\n/g, "\n").replace(/\\t/g, "\t");
  if (stop) body.stop = [stop];
  if (model) body.model = model;
  return body;
}

async function run(column) {
  const out = $("out-" + column), stats = $("stats-" + column);
  out.replaceChildren();
  const prompt = document.createElement("span");
  prompt.className = "prompt";
  prompt.textContent = $("prompt").value;
  const text = document.createTextNode("");
  out.append(prompt, text);
  stats.textContent = "…";
  stats.className = "stats";
  const started = performance.now();
  let model = "", finish = "", tokens = null, firstAt = null;
  try {
    const response = await fetch("/v1/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(request($("model-" + column).value)),
    });
    if (!response.ok) {
      const body = await response.json();
      throw new Error(body.error ? body.error.message : response.statusText);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        model = chunk.model;
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        for (const choice of chunk.choices) {
          if (firstAt === null) firstAt = performance.now();
          text.appendData(choice.text);
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
    const seconds = (performance.now() - started) / 1000;
    stats.textContent = `${model} · ${tokens} tokens · ${finish} · first token ${
      Math.round(firstAt - started)} ms · ${seconds.toFixed(2)} s`;
  } catch (err) {
    stats.textContent = err.message;
    stats.className = "stats error";
  }
}

$("generate").addEventListener("click", () => Promise.all([run("a"), run("b")]));
$("api-key").addEventListener("change", () => loadChoices().catch((err) => { $("served").textContent = err.message; }));
loadChoices().catch((err) => { $("served").textContent = "— " + err.message; });
