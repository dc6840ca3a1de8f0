// Live: the microphone, or a file played at real time, → AudioWorklet (16 kHz PCM16) → /v1/stream.
// Interim text in its own line, finals with word confidences, the input level, and the latency
// from the moment the last sample of a final's speech was sent to the moment the final arrived.
// A dropped connection reconnects as the Python client does: a new stream, times going on from
// the audio already sent, audio captured meanwhile sent once the new stream is open.

import { $, REFUSED_TOKEN, clock, message, segmentLine, token } from "./api.js";

const SAMPLE_RATE = 16000;
const RETRY_CLOSES = new Set([1006, 1011, 1012, 1013]); // lost, server error, restarting, busy
const MAX_RETRIES = 8; // backoff 0.5, 1, 2, 4, then 5 s: about half a minute for a restart or deploy
const MAX_QUEUED = 600; // chunks of 100 ms held while reconnecting: one minute

const CLOSE_REASONS = {
  4401: REFUSED_TOKEN,
  4403: "This token may not transcribe (it lacks the 'transcribe' scope), or this page's origin is not allowed.",
  4429: "Too many streams or connections for this account right now; try again in a minute.",
  4400: "The server refused the stream's options.",
  1013: "The server is at capacity; try again shortly.",
  4408: "The stream was closed after a long silence.",
  1006: "The connection to the server was lost.",
};

// One live session; a reconnect replaces `ws` and advances `offset`, nothing else.
const live = {
  ws: null,
  media: null, // the microphone's MediaStream
  context: null,
  node: null, // the worklet
  source: null, // a file's AudioBufferSourceNode
  closing: false,
  streamId: null,
  options: "",
  offset: 0, // seconds of audio sent on earlier connections
  sent: 0, // samples sent on this connection
  queue: [],
  sendLog: [], // {until: seconds on the session's timeline, wall: ms} for each chunk sent
  latencies: [],
  retries: 0,
};

function status(text, kind = "idle") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

function setRunning(running) {
  $("start").disabled = running;
  $("live-file").disabled = running;
  $("stop").disabled = !running;
  $("diarize").disabled = running;
  $("record").disabled = running;
}

function streamOptions() {
  const params = new URLSearchParams({ sample_rate: String(SAMPLE_RATE) });
  if ($("diarize").checked) params.set("diarize", "true");
  if ($("record").checked) params.set("record", "true");
  return params.toString();
}

function resetSession() {
  Object.assign(live, {
    closing: false, streamId: null, offset: 0, sent: 0, queue: [], sendLog: [], latencies: [], retries: 0,
  });
  live.options = streamOptions();
  $("transcript").replaceChildren();
  $("interim").textContent = "";
  $("latency").textContent = "latency —";
  message("");
}

async function startMicrophone() {
  resetSession();
  try {
    // labelling speakers needs each voice as it is: no noise suppression or gain riding
    const raw = $("diarize").checked;
    live.media = await navigator.mediaDevices.getUserMedia({
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
  setRunning(true);
  connect();
}

// A file is decoded by the browser and played through the same worklet at real time, so the
// server sees exactly what a microphone playing it would send.
async function startFile(file) {
  resetSession();
  const context = new AudioContext();
  let buffer;
  try {
    buffer = await context.decodeAudioData(await file.arrayBuffer());
  } catch {
    context.close();
    message(`${file.name}: this browser cannot decode it as audio. Upload it in the Library instead.`);
    return;
  }
  live.context = context;
  live.source = context.createBufferSource();
  live.source.buffer = buffer;
  live.source.onended = () => { if (!live.closing) stop(); };
  setRunning(true);
  connect();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const t = token();
  const protocols = t ? ["voxindex", `bearer.${t}`] : ["voxindex"];
  const ws = new WebSocket(`${scheme}://${location.host}/v1/stream?${live.options}`, protocols);
  ws.binaryType = "arraybuffer";
  live.ws = ws;
  status(live.retries ? "reconnecting…" : "connecting…");
  ws.onmessage = (ev) => onEvent(JSON.parse(ev.data));
  ws.onclose = (ev) => onClose(ws, ev);
  ws.onopen = async () => {
    if (!live.node) await startAudio();
    const waiting = live.queue.splice(0);
    waiting.forEach(send);
    if (live.closing) ws.send(JSON.stringify({ type: "close" })); // the close was lost with the old one
  };
}

async function startAudio() {
  const context = live.context || new AudioContext();
  await context.audioWorklet.addModule("worklet.js");
  const node = new AudioWorkletNode(context, "pcm16-downsampler");
  node.port.onmessage = (ev) => {
    if (ev.data.flushed) return node.flushed && node.flushed();
    $("level").value = Math.max(0, Math.min(1, (20 * Math.log10(ev.data.rms + 1e-9) + 60) / 60));
    send(ev.data.pcm);
  };
  if (live.source) {
    live.source.connect(node);
    live.source.connect(context.destination); // heard as it is transcribed
    live.source.start();
  } else {
    context.createMediaStreamSource(live.media).connect(node);
  }
  Object.assign(live, { context, node });
}

function send(pcm) {
  const ws = live.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    live.queue.push(pcm);
    if (live.queue.length > MAX_QUEUED) live.queue.shift();
    return;
  }
  ws.send(pcm);
  live.sent += pcm.byteLength / 2;
  live.sendLog.push({ until: live.offset + live.sent / SAMPLE_RATE, wall: performance.now() });
}

// When the sample at `time` (session seconds) went out; older entries are dropped as finals pass.
function sentAt(time) {
  const log = live.sendLog;
  while (log.length > 1 && log[0].until < time - 1e-6) log.shift();
  return log.length && log[0].until >= time - 1e-6 ? log[0].wall : null;
}

function showLatency(final, line) {
  const wall = sentAt(live.offset + final.end);
  if (wall === null) return;
  const seconds = (performance.now() - wall) / 1000;
  live.latencies.push(seconds);
  const sorted = [...live.latencies].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  $("latency").textContent = `latency ${seconds.toFixed(2)} s · median ${median.toFixed(2)} s over ${sorted.length}`;
  line.title = `final ${seconds.toFixed(2)} s after its speech was sent`;
}

function onEvent(ev) {
  if (ev.type === "ready") {
    live.streamId = ev.stream_id;
    $("transcript").dataset.live = ev.stream_id; // the stream being sent to now
    // the player highlights words by the stream's own time: only while the lines are on it
    if (live.offset === 0) $("transcript").dataset.stream = ev.stream_id;
    else delete $("transcript").dataset.stream;
    status("listening", "live");
    live.retries = 0;
  } else if (ev.type === "interim") {
    $("interim").textContent = ev.text;
  } else if (ev.type === "final") {
    $("interim").textContent = "";
    const line = segmentLine(ev, live.offset);
    line.id = `seg-${live.streamId}-${ev.segment_id}`;
    $("transcript").append(line);
    line.scrollIntoView({ block: "nearest" });
    showLatency(ev, line);
  } else if (ev.type === "error") {
    message(`${ev.code}: ${ev.message}`);
  } else if (ev.type === "closed") {
    status("stream closed");
  }
}

function onClose(ws, ev) {
  if (ws !== live.ws) return;
  const finished = live.closing && (ev.code === 1000 || $("status").textContent === "stream closed");
  if (!finished && RETRY_CLOSES.has(ev.code) && live.retries < MAX_RETRIES) {
    live.offset += live.sent / SAMPLE_RATE;
    live.sent = 0;
    live.retries += 1;
    status("reconnecting…", "error");
    $("transcript").append(Object.assign(document.createElement("div"), {
      className: "notice", textContent: `— connection lost at ${clock(live.offset)}; continuing in a new stream —`,
    }));
    setTimeout(connect, Math.min(500 * 2 ** (live.retries - 1), 5000));
    return;
  }
  stopAudio();
  live.ws = null;
  if (!finished && CLOSE_REASONS[ev.code]) {
    message(CLOSE_REASONS[ev.code] + (ev.reason ? ` (${ev.reason})` : ""));
    status("disconnected", "error");
  } else if (!finished) {
    status("not connected");
  }
  setRunning(false);
  if (live.streamId) window.dispatchEvent(new CustomEvent("vx:streams-changed")); // one was opened
}

function stopAudio() {
  if (live.media) live.media.getTracks().forEach((t) => t.stop());
  if (live.source) {
    live.source.onended = null;
    try { live.source.stop(); } catch { /* already ended */ }
  }
  if (live.context) live.context.close();
  Object.assign(live, { media: null, context: null, node: null, source: null });
  $("level").value = 0;
}

// The worklet's part-filled chunk is sent, then `close`: the last finals arrive, then `closed`.
async function stop() {
  live.closing = true;
  $("stop").disabled = true;
  status("finishing…");
  const node = live.node;
  if (node) {
    await Promise.race([new Promise((resolve) => { node.flushed = resolve; node.port.postMessage("flush"); }),
      new Promise((resolve) => setTimeout(resolve, 300))]);
  }
  if (live.media) live.media.getTracks().forEach((t) => t.stop());
  if (live.source) live.source.onended = null;
  if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({ type: "close" }));
}

function dropped(ev) {
  ev.preventDefault();
  $("live-drop").classList.remove("over");
  const file = ev.dataTransfer && ev.dataTransfer.files[0];
  if (file && !live.ws) startFile(file);
}

$("start").onclick = startMicrophone;
$("stop").onclick = stop;
$("live-file").onchange = () => { const f = $("live-file").files[0]; if (f) startFile(f); $("live-file").value = ""; };
$("live-drop").addEventListener("dragover", (ev) => { ev.preventDefault(); $("live-drop").classList.add("over"); });
$("live-drop").addEventListener("dragleave", () => $("live-drop").classList.remove("over"));
$("live-drop").addEventListener("drop", dropped);
