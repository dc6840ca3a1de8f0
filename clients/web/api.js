// The server's REST API as the page uses it. The token travels only in an Authorization header
// (and, for WebSockets, a subprotocol): never in a URL, so it stays out of access logs.

export const $ = (id) => document.getElementById(id);

export function token() {
  return $("token").value.trim();
}

function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

export const REFUSED_TOKEN = "The server refused the token: paste a valid token (voxindex token … or an API key).";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function failure(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not JSON: the status says enough
  }
  const err = body.error || {};
  const said = err.message || response.statusText;
  // what to do about it, where the user can act: a token the server does not take
  const text = response.status === 401 ? `${REFUSED_TOKEN} (${said})` : said;
  return new ApiError(response.status, err.code || String(response.status), text);
}

// One request with the token; a refusal becomes an ApiError with the server's code and message.
async function request(path, params, method = "GET") {
  const url = params ? `${path}?${new URLSearchParams(params)}` : path;
  const response = await fetch(url, { method, headers: authHeaders() });
  if (!response.ok) throw await failure(response);
  return response;
}

export async function getJson(path, params) {
  return (await request(path, params)).json();
}

export async function getBlob(path, params) {
  return (await request(path, params)).blob();
}

export async function remove(path) {
  return (await request(path, null, "DELETE")).json();
}

// Upload with progress: fetch has no upload progress, XMLHttpRequest does.
export function upload(files, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const file of files) form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/recordings");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) onProgress(ev.loaded / ev.total); };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* an edge's HTML error page */ }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body.recordings || [body]);
      } else {
        const err = body.error || {};
        reject(new ApiError(xhr.status, err.code || String(xhr.status), err.message || `upload failed (${xhr.status})`));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "the upload could not reach the server"));
    xhr.send(form);
  });
}

export function clock(seconds) {
  const m = Math.floor(seconds / 60), s = (seconds % 60).toFixed(1).padStart(4, "0");
  return `${String(m).padStart(2, "0")}:${s}`;
}

export function duration(seconds) {
  if (seconds == null) return "—";
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = Math.round(seconds % 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}

export function message(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

// A final segment as the page shows it everywhere: its times, the speaker, then each word as a
// span carrying its span of audio (for the playing-word highlight) and its confidence on hover.
export function segmentLine(segment, offset = 0) {
  const start = segment.start + offset, end = segment.end + offset;
  const line = el("div", { className: "segment final" });
  line.dataset.start = start;
  line.dataset.end = end;
  // spaces between the parts, so the line reads (and copies) as text
  line.append(el("span", { className: "time", textContent: `${clock(start)}–${clock(end)}` }), " ");
  if (segment.speaker !== undefined && segment.speaker !== null) line.append(speakerTag(segment.speaker), " ");
  const words = segment.words || [];
  if (!words.length) {
    line.append(document.createTextNode(segment.text.trim()));
    return line;
  }
  words.forEach((w, i) => {
    const who = w.speaker ?? segment.speaker;
    const span = el("span", { className: who == null ? "word" : `word speaker-${who % 8}`, textContent: w.word.trim() });
    span.dataset.start = w.start + offset;
    span.dataset.end = w.end + offset;
    if (w.confidence < 0.5) span.classList.add("unsure");
    span.title = `confidence ${w.confidence.toFixed(2)}${w.speaker == null ? "" : ` · speaker ${w.speaker}`}`;
    if (i) line.append(document.createTextNode(" "));
    line.append(span);
  });
  return line;
}

function speakerTag(speaker) {
  return el("span", { className: `speaker speaker-${speaker % 8}`, textContent: `Speaker ${speaker}` });
}
