// One player for the page: plays a recording's media or a record=true stream's kept audio from a
// given second, and highlights the word being said in whichever transcript shows that stream.
// The audio is fetched with the Authorization header into a blob (an <audio src> cannot carry a
// header, and the token must not go into a URL); the whole file comes down once per source.

import { $, ApiError, clock, getBlob } from "./api.js";

const player = { id: null, url: null, loading: null };

function audioPath(id, isRecording) {
  return isRecording ? `/v1/recordings/${encodeURIComponent(id)}/media` : `/v1/streams/${encodeURIComponent(id)}/audio`;
}

async function load(id, isRecording) {
  if (player.id === id && player.url) return;
  const blob = await getBlob(audioPath(id, isRecording));
  if (player.url) URL.revokeObjectURL(player.url);
  player.url = URL.createObjectURL(blob);
  player.id = id;
  const audio = $("player");
  audio.src = player.url;
  await new Promise((resolve, reject) => {
    audio.onloadedmetadata = resolve;
    audio.onerror = () => reject(new ApiError(0, "unplayable", "this browser cannot play that audio"));
  });
}

// Play stream/recording `id` from `start` seconds; `title` names it in the player bar.
export async function playFrom(id, isRecording, start, title) {
  const audio = $("player");
  $("now-playing").textContent = `Loading ${title}…`;
  try {
    await load(id, isRecording);
  } catch (err) {
    $("now-playing").textContent = err.status === 404
      ? `No audio kept for ${title} (stream with “Keep audio” to listen later)`
      : `Cannot play ${title}: ${err.message}`;
    return false;
  }
  audio.currentTime = start;
  $("now-playing").textContent = `${title} · from ${clock(start)}`;
  try {
    await audio.play();
  } catch {
    // autoplay refused: the controls are there, at the right second
  }
  return true;
}

export function forget(id) {
  if (player.id !== id) return;
  $("player").removeAttribute("src");
  $("player").load();
  if (player.url) URL.revokeObjectURL(player.url);
  Object.assign(player, { id: null, url: null });
  $("now-playing").textContent = "Nothing playing";
}

// The word whose span holds the playing second, in every transcript showing the playing stream
// (the Live view's and the Library's may both show it).
function highlight() {
  const t = $("player").currentTime;
  document.querySelectorAll(".word.playing, .segment.playing").forEach((n) => n.classList.remove("playing"));
  const boxes = document.querySelectorAll(`.transcript[data-stream="${CSS.escape(player.id || "")}"]`);
  for (const box of boxes) {
    const word = [...box.querySelectorAll(".word")].find((w) => +w.dataset.start <= t && t < +w.dataset.end);
    if (word) {
      word.classList.add("playing");
      word.closest(".segment").classList.add("playing");
    }
  }
}

$("player").addEventListener("timeupdate", highlight);
$("player").addEventListener("seeked", highlight);
