// voxindex in the browser: Live (microphone or file → /v1/stream), Library (streams and
// recordings, upload, transcript, export, delete), Search (as you type; a hit plays where it was
// said). Plain ES modules, no build step. The token comes from the URL fragment (#token=…, which
// browsers never send to a server) or the field, is taken out of the address bar at once, and
// goes to the server only as a WebSocket subprotocol or an Authorization header.

import { $ } from "./api.js";
import "./live.js";
import "./library.js";
import "./player.js";
import "./search.js";
import "./tabs.js";

const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  $("token").value = fragment.get("token");
  history.replaceState(null, "", location.pathname + location.search); // out of the address bar and history
}
