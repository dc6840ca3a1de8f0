"""Speaker labels for live streams (online) and recordings (whole file).

Live: a diarized stream's voiced audio (VAD chunks of 32 ms, silence left out) is read in
windows of ``WINDOW_S`` every ``HOP_S`` of voice, never across a pause. ``Speakers.embed`` runs
the speaker encoder over every stream's due windows in one batch, on the model's device (the
speaker worker calls it, off the engine's thread). A window labels the middle of its span (its
edges belong to the windows before and after), so a change of speaker moves the labels within
~``HOP_S``. When a final is made, ``label`` reads the voice not yet windowed (one short window)
and ``SpeakerHistory.resolve`` assigns the windows read since the last final together, so the
final carries labels for all its words without waiting for later audio.

Recordings: ``diarize_recording`` reads the whole file's voiced windows, clusters them all at
once (agglomerative, better than online: every window sees every other), and returns the
timeline the recording's segments are labelled from.
"""
