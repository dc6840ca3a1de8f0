"""Events from an utterance to its client: finals labelled with speakers and stored before they
are sent, the rest in order behind them, latencies observed on the way."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Protocol

from voxindex.engine.events import Closed, Error, Event, Final, Interim
from voxindex.engine.speakers.timeline import dominant
from voxindex.engine.speakers.worker import SpeakerWorker
from voxindex.engine.stream import Stream, StreamStatus
from voxindex.engine.utterance import Emitted
from voxindex.errors import StoreUnavailableError, VoxError
from voxindex.metrics import Metrics

log = logging.getLogger("voxindex.engine")


class TranscriptSink(Protocol):
    """Where finals go before they are sent (the transcript index). Called on the engine thread.

    ``commit`` must not block on a remote store: a store that acknowledges later (Milvus) keeps
    the final in a local journal, and ``deliver`` runs ``send`` once everything committed for
    the stream so far is acknowledged; an embedded store acknowledges at once.
    """

    def open_stream(self, stream_id: str, model: str, tenant: str) -> None: ...

    def commit(self, stream_id: str, final: Final, model: str) -> int: ...

    def deliver(self, stream_id: str, send: Callable[[], None]) -> None: ...

    def close_stream(self, stream_id: str, duration: float | None = None) -> None: ...


class Delivery:
    def __init__(
        self, sink: TranscriptSink | None, model: str, metrics: Metrics, speakers: SpeakerWorker | None
    ) -> None:
        self.sink, self.model, self.metrics, self.speakers = sink, model, metrics, speakers

    def deliver(self, s: Stream, events: list[Emitted]) -> None:
        """Send what a stream's utterance emitted, in order. A final the store will not take
        ends the stream: nothing after it is sent."""
        for event, since in events:
            if isinstance(event, Final):
                event = self._label(s, event)
                if not self._commit(s, event):
                    return
            elif isinstance(event, Interim) and since is not None:
                self.metrics.onset_to_interim.observe(time.monotonic() - s.arrived_at(since))
            self._send(s, event)
            if isinstance(event, Final):
                self.metrics.finals.labels(event.reason).inc()
                if since is not None:
                    self.metrics.end_to_final.labels(event.reason).observe(
                        time.monotonic() - s.arrived_at(since)
                    )

    def closed(self, s: Stream) -> None:
        self._send(s, Closed(round(s.now, 3), s.finals))

    def close_in_store(self, s: Stream) -> None:
        """Mark the stream closed in the store; its finals are already there, so a store that
        cannot take the mark only costs the ``closed`` time (logged)."""
        if self.sink is None:
            return
        try:
            self.sink.close_stream(s.id, round(s.now, 3))
        except Exception as e:
            log.warning("stream's end not stored: %s", e, extra={"stream_id": s.id, "tenant": s.tenant})

    def _label(self, s: Stream, final: Final) -> Final:
        """A diarized stream's final with a speaker on every word (its windows were read
        off-thread; ``label_now`` reads the rest) and its main speaker."""
        if s.speakers is None or self.speakers is None:
            return final
        words = self.speakers.label_now(s.speakers, final.words)
        return replace(final, words=words, speaker=dominant(words))

    def _commit(self, s: Stream, final: Final) -> bool:
        """Store the final (durable before it is sent). A store that cannot take it ends this
        stream, no other: the client hears so after the finals already stored."""
        if self.sink is None:
            return True
        try:
            self.sink.commit(s.id, final, self.model)
            return True
        except Exception as e:
            if isinstance(e, VoxError):
                log.error("final not stored: %s", e.message, extra={"stream_id": s.id, "tenant": s.tenant})
                error = StoreUnavailableError(e.message) if not isinstance(e, StoreUnavailableError) else e
            else:
                log.exception("final not stored", extra={"stream_id": s.id, "tenant": s.tenant})
                error = StoreUnavailableError(f"the transcript store failed: {e.__class__.__name__}")
            self._send(s, Error(error.code, error.message + "; this stream ends after its stored finals"))
            s.finish()
            return False

    def _send(self, s: Stream, event: Event) -> None:
        """Events reach the client in order, and none before the finals ahead of it are stored."""
        if self.sink is None:
            s.emit(event)
        elif s.status < StreamStatus.ABORTING:  # nobody listens to an aborted stream
            self.sink.deliver(s.id, partial(s.post, event))
