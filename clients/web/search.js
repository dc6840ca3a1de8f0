// Search: results as you type (300 ms after the last key), the query's words marked in each hit
// and its neighbours, filters by stream, time and speaker; a hit opens its transcript at the
// segment and plays from the hit's start. Each hit shows its relevance (how sure search is that
// it says what was asked); a query for something nobody said finds nothing and says so, and the
// nearest segments are one click away, shown as what they are: not matches.

import { $, clock, el, getJson, message } from "./api.js";
import { open, refresh, titleOf } from "./library.js";
import { playFrom } from "./player.js";

const DEBOUNCE_MS = 300;
const search = { timer: null, asked: 0, nearest: false };

// `text` with every word that starts like a query word wrapped in <mark> (text nodes only: hits
// are user content and never become HTML).
function marked(text, query) {
  const words = (query.toLowerCase().match(/[\p{L}\p{N}']{2,}/gu) || []).map((w) => w.replace(/'/g, ""));
  if (!words.length) return [document.createTextNode(text)];
  const nodes = [];
  for (const part of text.split(/([\p{L}\p{N}']+)/u)) {
    const bare = part.toLowerCase().replace(/'/g, "");
    const hit = bare && words.some((w) => bare.startsWith(w) || (bare.length >= 3 && w.startsWith(bare)));
    nodes.push(hit ? el("mark", { textContent: part }) : document.createTextNode(part));
  }
  return nodes;
}

function params(q) {
  const p = { q, k: "20" };
  if (search.nearest) p.min_score = "0";
  const stream = $("filter-stream").value, since = $("filter-since").value, until = $("filter-until").value;
  const speaker = $("filter-speaker").value;
  if (stream) p.stream_id = stream;
  if (since) p.since = new Date(since).toISOString(); // datetime-local is the browser's local time
  if (until) p.until = new Date(until).toISOString();
  if (speaker !== "") p.speaker = speaker;
  return p;
}

function result(hit, q) {
  const who = hit.speaker === undefined ? "" : `Speaker ${hit.speaker} · `;
  const relevance = el("span", {
    className: "relevance",
    textContent: `${Math.round(hit.score * 100)}%`,
    title: "how sure search is that this says what you asked",
  });
  const button = el("button", { className: "hit-open" },
    el("span", { className: "where", textContent: `${titleOf(hit.stream_id)} · ${who}${clock(hit.start)} ` }, relevance),
    el("span", { className: "context" },
      el("span", { className: "around" }, ...marked(hit.context.before ? `${hit.context.before} ` : "", q)),
      el("span", { className: "said" }, ...marked(hit.text.trim(), q)),
      el("span", { className: "around" }, ...marked(hit.context.after ? ` ${hit.context.after}` : "", q))));
  button.onclick = async () => {
    await open(hit.stream_id, hit.segment_index);
    await playFrom(hit.stream_id, Boolean(hit.recording_id), hit.start, titleOf(hit.stream_id));
  };
  const li = el("li", { className: "result" }, button);
  li.dataset.stream = hit.stream_id;
  return li;
}

async function run() {
  clearTimeout(search.timer);
  const q = $("query").value.trim();
  const asked = ++search.asked;
  if (!q) {
    $("results").replaceChildren();
    return;
  }
  let body;
  try {
    body = await getJson("/v1/search", params(q));
  } catch (err) {
    if (asked === search.asked) message(`search: ${err.message}`);
    return;
  }
  if (asked !== search.asked) return; // a newer query went out meanwhile
  message("");
  const hits = body.hits.map((h) => result(h, q));
  if (search.nearest) hits.forEach((li) => li.classList.add("nearest"));
  $("results").replaceChildren(...hits);
  if (search.nearest) {
    $("results").prepend(el("li", { className: "empty", textContent: "Not matches: the nearest things said." }));
  } else if (!body.hits.length) {
    const nearest = el("button", { id: "show-nearest", type: "button", textContent: "Show the nearest" });
    nearest.onclick = () => { search.nearest = true; run(); };
    $("results").append(el("li", { className: "empty", textContent: "Nothing found: no segment says that. " }, nearest));
  }
}

function soon() {
  search.nearest = false; // a new query: matches only, again
  clearTimeout(search.timer);
  search.timer = setTimeout(run, DEBOUNCE_MS);
}

// The stream filter lists what the library lists.
window.addEventListener("vx:library", (ev) => {
  const select = $("filter-stream"), chosen = select.value;
  select.replaceChildren(el("option", { value: "", textContent: "all" }),
    ...ev.detail.map((i) => el("option", { value: i.id, textContent: titleOf(i.id) })));
  select.value = ev.detail.some((i) => i.id === chosen) ? chosen : "";
});
window.addEventListener("vx:deleted", (ev) => {
  document.querySelectorAll(`#results li.result[data-stream="${CSS.escape(ev.detail)}"]`).forEach((li) => li.remove());
});

$("search-form").onsubmit = (ev) => { ev.preventDefault(); search.nearest = false; run(); };
$("query").addEventListener("input", soon);
for (const id of ["filter-stream", "filter-since", "filter-until", "filter-speaker"]) $(id).addEventListener("change", run);
window.addEventListener("vx:tab", (ev) => { if (ev.detail === "search") refresh(); }); // the stream filter's names
