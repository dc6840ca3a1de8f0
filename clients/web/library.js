// Library: the tenant's live streams and uploaded recordings, newest first (a recording is a stream
// too, so each shows once); uploads by drop or file input with a progress bar; a transcript view
// whose segments play from their start; export and delete.

import { $, duration, el, getBlob, getJson, message, remove, segmentLine, upload } from "./api.js";
import { forget, playFrom } from "./player.js";
import { showTab } from "./tabs.js";

const library = { items: new Map(), selected: null, poll: null };

// One entry per stream: a recording's fields (filename, status, progress) win over its stream row.
function merge(streams, recordings) {
  const items = new Map();
  for (const s of streams) {
    items.set(s.id, {
      id: s.id, recording: false, title: "Live stream", created: s.created, duration: s.duration,
      status: s.closed ? "ended" : "live", progress: null, segments: s.segments, audio: s.audio,
    });
  }
  for (const r of recordings) {
    items.set(r.id, {
      id: r.id, recording: true, title: r.filename, created: r.created, duration: r.duration,
      status: r.status, progress: r.progress, reason: r.reason, segments: r.segments, audio: true,
    });
  }
  return new Map([...items.values()].sort((a, b) => b.created - a.created).map((i) => [i.id, i]));
}

function when(created) {
  return new Date(created * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function statusText(item) {
  if (item.status === "transcribing") return `transcribing ${Math.round(item.progress * 100)}%`;
  if (item.status === "failed") return `failed: ${item.reason || "unknown"}`;
  return item.status;
}

function row(item) {
  const button = el("button", { className: "item-open" },
    el("strong", { className: "title", textContent: item.title }),
    el("span", { className: "meta", textContent: `${when(item.created)} · ${duration(item.duration)} · ${item.segments} segments` }),
    el("span", { className: `badge ${item.status}`, textContent: statusText(item) }));
  if (item.audio) button.append(el("span", { className: "badge audio", textContent: "audio" }));
  if (item.status === "transcribing" || item.status === "queued") {
    button.append(el("progress", { max: 1, value: item.progress || 0, ariaLabel: `${item.title} progress` }));
  }
  button.onclick = () => open(item.id);
  const li = el("li", { className: `item${library.selected === item.id ? " selected" : ""}` }, button);
  li.dataset.id = item.id;
  return li;
}

export async function refresh() {
  let streams, recordings;
  try {
    [streams, recordings] = await Promise.all([
      getJson("/v1/streams", { limit: "500" }), getJson("/v1/recordings"),
    ]);
  } catch (err) {
    message(`library: ${err.message}`);
    return;
  }
  library.items = merge(streams.streams, recordings.recordings);
  $("library").replaceChildren(...[...library.items.values()].map(row));
  if (!library.items.size) $("library").append(el("li", { className: "empty", textContent: "Nothing yet: stream or upload something." }));
  window.dispatchEvent(new CustomEvent("vx:library", { detail: [...library.items.values()] }));
  const busy = [...library.items.values()].some((i) => i.status === "queued" || i.status === "transcribing" || i.status === "live");
  clearTimeout(library.poll);
  if (busy) library.poll = setTimeout(refresh, 1000);
  if (library.selected && !library.items.has(library.selected)) close();
}

export function titleOf(id) {
  const item = library.items.get(id);
  return item ? `${item.title} (${when(item.created)})` : `stream ${id.slice(0, 8)}`;
}

// Show one stream's transcript; `hit` (a segment_index) is marked and scrolled to.
export async function open(id, hit = null) {
  showTab("library");
  if (!library.items.has(id)) await refresh();
  library.selected = id;
  document.querySelectorAll("#library .item").forEach((li) => li.classList.toggle("selected", li.dataset.id === id));
  let body;
  try {
    body = await getJson(`/v1/streams/${encodeURIComponent(id)}/transcript`, { format: "json" });
  } catch (err) {
    message(`transcript: ${err.message}`);
    return;
  }
  const item = library.items.get(id);
  const isRecording = item ? item.recording : false;
  const box = $("detail-transcript");
  box.dataset.stream = id;
  box.replaceChildren(...body.segments.map((s) => {
    const line = segmentLine(s);
    line.dataset.index = s.segment_index;
    line.tabIndex = 0;
    const play = () => playFrom(id, isRecording, s.start, titleOf(id));
    line.onclick = play;
    line.onkeydown = (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); play(); } };
    return line;
  }));
  if (!body.segments.length) box.append(el("p", { className: "empty", textContent: "No final segments." }));
  $("detail-title").textContent = item ? item.title : "Stream";
  const audioNote = item && item.audio ? "click a segment to play it" : "no audio kept";
  $("detail-meta").textContent = `${when(body.stream.created)} · ${duration(item ? item.duration : body.stream.duration)} · ${body.segments.length} segments · ${audioNote}`;
  $("detail").hidden = false;
  if (hit !== null) {
    const line = box.querySelector(`.segment[data-index="${hit}"]`);
    if (line) {
      line.classList.add("hit");
      line.scrollIntoView({ block: "center" });
    }
  }
}

function close() {
  library.selected = null;
  $("detail").hidden = true;
  $("detail-transcript").replaceChildren();
  delete $("detail-transcript").dataset.stream;
}

async function exportAs(format) {
  const id = library.selected;
  try {
    const blob = await getBlob(`/v1/streams/${encodeURIComponent(id)}/transcript`, { format });
    const base = (library.items.get(id)?.title || id).replace(/\.[^.]+$/, "").replace(/[^\w.-]+/g, "_");
    const link = el("a", { href: URL.createObjectURL(blob), download: `${base}.${format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  } catch (err) {
    message(`export: ${err.message}`);
  }
}

async function deleteSelected() {
  const id = library.selected;
  const item = library.items.get(id);
  const what = item ? `“${item.title}” from ${when(item.created)}` : "this stream";
  if (!confirm(`Delete ${what}: its transcript, search entries and audio? This cannot be undone.`)) return;
  try {
    await remove(`/v1/streams/${encodeURIComponent(id)}`); // a recording's media goes with it
  } catch (err) {
    message(`delete: ${err.message}`);
    return;
  }
  forget(id);
  close();
  window.dispatchEvent(new CustomEvent("vx:deleted", { detail: id }));
  await refresh();
}

async function send(files) {
  if (!files.length) return;
  const names = files.length === 1 ? files[0].name : `${files.length} files`;
  const bar = $("upload-progress"), label = $("upload-label");
  bar.value = 0;
  label.textContent = `Uploading ${names}…`;
  try {
    await upload(files, (fraction) => {
      bar.value = Math.round(fraction * 100);
      label.textContent = `Uploading ${names}… ${bar.value}%`;
    });
    label.textContent = `Uploaded ${names}; its status is in the list`;
  } catch (err) {
    label.textContent = `Upload of ${names} failed`;
    message(`upload: ${err.message}`);
  }
  await refresh();
}

const zone = $("dropzone");
zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (ev) => {
  ev.preventDefault();
  zone.classList.remove("over");
  send([...(ev.dataTransfer ? ev.dataTransfer.files : [])]);
});
$("upload-file").onchange = () => { send([...$("upload-file").files]); $("upload-file").value = ""; };
document.querySelectorAll("#detail [data-format]").forEach((b) => { b.onclick = () => exportAs(b.dataset.format); });
$("delete").onclick = deleteSelected;
window.addEventListener("vx:streams-changed", refresh);
window.addEventListener("vx:tab", (ev) => { if (ev.detail === "library") refresh(); });
