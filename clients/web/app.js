// voxindex in the browser: microphone → AudioWorklet (16 kHz PCM16) → /v1/stream; live transcript; search.
// The token comes from the URL fragment (#token=…, which browsers never send to a server) or the
// field; it goes to the server only as a WebSocket subprotocol and an Authorization header, and
// is never logged.

const $ = (id) => document.getElementById(id);
const state = { ws: null, audio: null, stream: null, streamId: null, closing: false };

const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  $("token").value = fragment.get("token");
  history.replaceState(null, "", location.pathname + location.search); // out of the address bar
}

function status(text, kind = "idle") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

function message(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

function clock(seconds) {
  const m = Math.floor(seconds / 60), s = (seconds % 60).toFixed(1).padStart(4, "0");
  return `${String(m).padStart(2, "0")}:${s}`;
}

const CLOSE_REASONS = {
  4401: "The server refused the token: paste a valid token (voxindex token … or an API key).",
  4403: "This token may not transcribe (it lacks the 'transcribe' scope), or this page's origin is not allowed.",
  4429: "Too many streams or connections for this account right now; try again in a minute.",
  1013: "The server is at capacity; try again shortly.",
  4408: "The stream was closed after a long silence.",
  1006: "The connection to the server was lost.",
};

async function start() {
  const token = $("token").value.trim();
  message("");
  let media;
  try {
    // labelling speakers needs each voice as it is: no noise suppression or gain riding
    const raw = $("diarize").checked;
    media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: !raw, autoGainControl: !raw },
    });
  } catch (err) {
    const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
    message(denied
      ? "Microphone access was denied. Allow the microphone for this site and press Start again."
      : `No microphone could be opened (${err && err.name}).`);
    status("microphone unavailable", "error");
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const protocols = token ? ["voxindex", `bearer.${token}`] : ["voxindex"];
  const query = `sample_rate=16000${$("diarize").checked ? "&diarize=true" : ""}`;
  const ws = new WebSocket(`${scheme}://${location.host}/v1/stream?${query}`, protocols);
  ws.binaryType = "arraybuffer";
  Object.assign(state, { ws, stream: media, closing: false });
  status("connecting…");
  ws.onmessage = (ev) => onEvent(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    stopAudio();
    if (CLOSE_REASONS[ev.code] && !(ev.code === 1006 && state.closing)) {
      message(CLOSE_REASONS[ev.code]);
      status("disconnected", "error");
    } else if (!state.closing) {
      status("not connected");
    } // after our close the status stays "stream closed"
    $("start").disabled = false;
    $("stop").disabled = true;
  };
  ws.onopen = async () => {
    const context = new AudioContext();
    await context.audioWorklet.addModule("worklet.js");
    const source = context.createMediaStreamSource(media);
    const node = new AudioWorkletNode(context, "pcm16-downsampler");
    node.port.onmessage = (ev) => { if (ws.readyState === WebSocket.OPEN && !state.closing) ws.send(ev.data); };
    source.connect(node);
    state.audio = context;
    $("start").disabled = true;
    $("stop").disabled = false;
  };
}

function onEvent(ev) {
  if (ev.type === "ready") {
    state.streamId = ev.stream_id;
    status("listening", "live");
  } else if (ev.type === "interim") {
    $("interim").textContent = ev.text;
  } else if (ev.type === "final") {
    $("interim").textContent = "";
    const line = document.createElement("div");
    line.className = "segment final";
    line.id = `seg-${state.streamId}-${ev.segment_id}`;
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = `${clock(ev.start)}–${clock(ev.end)}`;
    line.append(time);
    if (ev.speaker !== undefined) line.append(speakerTag(ev.speaker));
    line.append(...wordsOf(ev));
    $("transcript").append(line);
  } else if (ev.type === "error") {
    message(`${ev.code}: ${ev.message}`);
  } else if (ev.type === "closed") {
    status("stream closed");
  }
}

// Speakers (diarize=true): each label has its colour; a word spoken by another speaker than the
// segment's own is coloured as its speaker, so a change inside a final shows.
function speakerTag(speaker) {
  const tag = document.createElement("span");
  tag.className = `speaker speaker-${speaker % 8}`;
  tag.textContent = `Speaker ${speaker}`;
  return tag;
}

function wordsOf(ev) {
  if (ev.speaker === undefined || !ev.words || !ev.words.length) return [document.createTextNode(ev.text)];
  return ev.words.flatMap((w, i) => {
    const span = document.createElement("span");
    span.className = `word speaker-${(w.speaker ?? ev.speaker) % 8}`;
    span.textContent = w.word.trim();
    span.title = `speaker ${w.speaker} · confidence ${w.confidence.toFixed(2)}`;
    return i ? [document.createTextNode(" "), span] : [span];
  });
}

function stopAudio() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  if (state.audio) state.audio.close();
  state.stream = null;
  state.audio = null;
}

function stop() {
  state.closing = true;
  stopAudio();
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: "close" })); // the last finals arrive, then `closed`
  }
  status("finishing…");
  $("stop").disabled = true;
}

async function search(event) {
  event.preventDefault();
  const q = $("query").value.trim();
  if (!q) return;
  const token = $("token").value.trim();
  const response = await fetch(`/v1/search?${new URLSearchParams({ q, k: "10" })}`, {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
  const body = await response.json();
  $("results").replaceChildren();
  if (!response.ok) {
    message(`search: ${body.error ? body.error.message : response.status}`);
    return;
  }
  for (const hit of body.hits) {
    const item = document.createElement("li");
    item.className = "result";
    const who = hit.speaker === undefined ? "" : `Speaker ${hit.speaker}: `;
    item.textContent = `${clock(hit.start)} ${who}${hit.text}`;
    item.onclick = () => jump(hit);
    $("results").append(item);
  }
  if (!body.hits.length) $("results").textContent = "Nothing found.";
}

function jump(hit) {
  const line = document.getElementById(`seg-${hit.stream_id}-${hit.segment_index}`);
  if (!line) {
    message(`That was said in another session (stream ${hit.stream_id.slice(0, 8)}, at ${clock(hit.start)}).`);
    return;
  }
  document.querySelectorAll(".segment.hit").forEach((el) => el.classList.remove("hit"));
  line.classList.add("hit");
  line.scrollIntoView({ block: "center" });
}

$("start").onclick = start;
$("stop").onclick = stop;
$("search-form").onsubmit = search;
