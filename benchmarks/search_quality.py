"""Search quality: does search find what was said, and only that?

    .venv/bin/python benchmarks/search_quality.py                  # old fusion against the new relevance
    .venv/bin/python benchmarks/search_quality.py --json out.json --verbose

The corpus and queries are ``benchmarks/search_corpus.py``: the project's real recordings and
test texts as tiny.en heard them (one stream per family, 84 segments, 34 of them distractors),
45 queries a user would write for something said (paraphrases, keywords, names, numbers as
words or digits) and 20 for things never said. Each query runs against one embedded index
(SQLite + FAISS, the server's default), in one run:

- ``old``: today's fusion before issue #35 — FTS5 (its old terms: stopwords out, no number
  spellings) and FAISS, 50 candidates each, reciprocal rank fusion; every query returns ``k``.
- ``new``: ``Searcher.search`` as the server runs it (index/relevance.py), default ``min_score``.
- ``new, min_score 0``: the same ranking with no cut-off (ranking quality alone).

Answerable queries score recall@1, recall@5 and MRR (the answer's rank among the hits; none: 0);
unanswerable ones the share that got no hit at all. Latency: the mean time of one search.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.search_corpus import QUERIES, Source, sources
from tests.conftest import make_synth

from voxindex.engine.events import Final
from voxindex.engine.types import Word
from voxindex.index.live import LiveIndex
from voxindex.index.records import Filters
from voxindex.index.relevance import DEFAULT_MIN_SCORE
from voxindex.index.search import Mode
from voxindex.index.sqlite import STORE_FILE
from voxindex.loading import load_model
from voxindex.transcribe import OfflineTranscriber

K = 10
RRF_K = 60
OLD_STOPWORDS = frozenset(
    """a an and are as at be but by do does did for from had has have he her his how i if in into is it
    its me my no not of on or our she so than that the their them then there these they this to too us
    was we were what when where which who why will with would you your""".split()
)

Search = Callable[[str], list[int]]  # a query's hits: segment ids, best first


def build(index: LiveIndex, corpus: list[Source]) -> dict[int, str]:
    """Commit every source as a final of its family's stream; segment id → source key."""
    keys: dict[int, str] = {}
    counts: dict[str, int] = {}
    for s in corpus:
        if s.stream not in counts:
            index.open_stream(s.stream, "tiny.en", "bench")
            counts[s.stream] = 0
        words = [Word(w, j * 0.4, j * 0.4 + 0.3, 0.9) for j, w in enumerate(s.heard.split())]
        final = Final(counts[s.stream], s.heard, 0.0, words[-1].end if words else 0.0, words, "en")
        keys[index.commit(s.stream, final, "tiny.en")] = s.key
        counts[s.stream] += 1
    deadline = time.monotonic() + 120
    while index.stats().vectors < len(keys):  # embedded off the caller's thread
        if time.monotonic() > deadline:
            raise RuntimeError("the corpus was never all embedded")
        time.sleep(0.1)
    return keys


def old_search(index: LiveIndex, db: sqlite3.Connection) -> Search:
    """Today's fusion as it was: FTS5 BM25 (any term, stopwords out) and FAISS, fused by rank."""
    searcher = index.searcher

    def search(query: str) -> list[int]:
        terms = [t for t in "".join(c if c.isalnum() else " " for c in query).split() if t]
        terms = [t for t in terms if t.lower() not in OLD_STOPWORDS] or terms
        match = " OR ".join(f'"{t}"' for t in terms[:64])
        keyword = db.execute(
            "SELECT rowid FROM segments_fts WHERE segments_fts MATCH ? ORDER BY bm25(segments_fts) LIMIT 50",
            (match,),
        ).fetchall()
        vector = searcher.vectors.search(searcher.embedder([query])[0], 50)
        scores: dict[int, float] = {}
        for ranking in ([int(r[0]) for r in keyword], [i for i, _ in vector]):
            for rank, i in enumerate(ranking, start=1):
                scores[i] = scores.get(i, 0.0) + 1.0 / (RRF_K + rank)
        return [i for i, _ in sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:K]]

    return search


def new_search(index: LiveIndex, **options: float) -> Search:
    def search(query: str) -> list[int]:
        return [h.segment.id for h in index.search(query, K, Mode.HYBRID, Filters(), **options)]

    return search


def margins(index: LiveIndex, keys: dict[int, str]) -> dict[str, float]:
    """How far the cut-off is from deciding: the lowest relevance of an answer, and the highest of
    any hit for a query whose answer was never said (no cut-off)."""
    answers, false = [], []
    for query in QUERIES:
        hits = index.search(query.text, K, Mode.HYBRID, Filters(), min_score=0.0)
        if query.answer is None:
            false += [h.score for h in hits[:1]]
        else:
            answers += [h.score for h in hits if keys[h.segment.id] == query.answer]
    return {"lowest_answer": round(min(answers), 3), "highest_unsaid": round(max(false), 3)}


def score(name: str, search: Search, keys: dict[int, str], verbose: bool) -> dict[str, Any]:
    ranks: list[int | None] = []
    silent = 0
    unanswerable = 0
    took = 0.0
    for query in QUERIES:
        started = time.perf_counter()
        hits = [keys[i] for i in search(query.text)]
        took += time.perf_counter() - started
        if query.answer is None:
            unanswerable += 1
            silent += not hits
            if verbose and hits:
                print(f"  {name}: false hit for {query.text!r}: {hits[:3]}")
            continue
        rank = hits.index(query.answer) + 1 if query.answer in hits else None
        ranks.append(rank)
        if verbose and rank != 1:
            print(f"  {name}: {query.kind} {query.text!r} → rank {rank}, got {hits[:3]}")
    answered = len(ranks)
    return {
        "search": name,
        "recall_at_1": round(sum(r == 1 for r in ranks) / answered, 3),
        "recall_at_5": round(sum(r is not None and r <= 5 for r in ranks) / answered, 3),
        "mrr": round(sum(1 / r for r in ranks if r is not None) / answered, 3),
        "no_hit_unanswerable": round(silent / unanswerable, 3),
        "answerable": answered,
        "unanswerable": unanswerable,
        "mean_ms": round(1000 * took / len(QUERIES), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="tiny.en", help="the model that hears the corpus")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--verbose", action="store_true", help="every miss and every false hit")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        transcriber = OfflineTranscriber(load_model(args.model, device="cpu", cache_dir=Path(tmp) / "models"))
        corpus = sources(lambda audio: transcriber.transcribe(audio).text, make_synth())
        index = LiveIndex.open(Path(tmp) / "index")
        try:
            keys = build(index, corpus)
            db = sqlite3.connect(f"file:{Path(tmp) / 'index' / STORE_FILE}?mode=ro", uri=True)
            rows = [
                score("old (RRF fusion)", old_search(index, db), keys, args.verbose),
                score("new (relevance, default min_score)", new_search(index), keys, args.verbose),
                score("new, min_score 0", new_search(index, min_score=0.0), keys, args.verbose),
            ]
            margin = margins(index, keys)
        finally:
            index.close()
    answerable, unanswerable = rows[0]["answerable"], rows[0]["unanswerable"]
    print(f"{len(corpus)} segments, {answerable} answerable / {unanswerable} unanswerable queries")
    print("| search | recall@1 | recall@5 | MRR | no hit (unanswerable) | ms / query |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['search']} | {r['recall_at_1']:.3f} | {r['recall_at_5']:.3f} | {r['mrr']:.3f} | "
            f"{100 * r['no_hit_unanswerable']:.0f} % | {r['mean_ms']} |"
        )
    print(
        f"relevance of the weakest answer {margin['lowest_answer']}, of the strongest hit for something "
        f"never said {margin['highest_unsaid']} (default cut-off {DEFAULT_MIN_SCORE})"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "margins": margin}, indent=2))


if __name__ == "__main__":
    main()
