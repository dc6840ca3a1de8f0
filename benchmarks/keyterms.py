"""Key terms and conversation context: recall, WER of the other words, false insertions.

    .venv/bin/python benchmarks/keyterms.py                       # tiny.en int8, 4 concurrent streams
    .venv/bin/python benchmarks/keyterms.py --model tiny.en:float32 --json out.json

Utterances holding rare names and domain terms (Piper voice), each streamed to a real server on
loopback over the native protocol (twice real time, 4 streams at once) without and with its key
terms (``?keyterms=``). Reported:

- **recall**: key terms said that come out spelled right (Whisper's English normaliser);
- **WER of the other words**: edit-distance alignment of reference to hypothesis, counting
  only errors on words outside the key terms (and insertions not next to one);
- **false insertions**: utterances *without* the terms, streamed with another utterance's key
  terms, and again with the whole glossary (every term that fits the 120-token key-term budget):
  offered terms that appear in the text, per (utterance, term) offered; and their WER.

Then a scripted agent dialogue in one stream: the agent's turns are sent as ``context``
messages, the user's turns are spoken; WER of the user turns with and without the context.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import corpus_wer, make_synth, normalized_words

from voxindex.cli.bench import _start_server
from voxindex.config import Settings
from voxindex.engine.prompting import PromptBuilder, Prompting
from voxindex.loading import load_model

# (what is said, the key terms in it)
ITEMS: list[tuple[str, list[str]]] = [
    ("Please forward the invoice to Siobhan Nguyen before Friday.", ["Siobhan Nguyen"]),
    ("Our cluster runs on Kubernetes with Grafana dashboards.", ["Kubernetes", "Grafana"]),
    ("The patient was prescribed Ozempic and Xarelto last month.", ["Ozempic", "Xarelto"]),
    ("Ask Xiomara whether the Tailscale tunnel is up.", ["Xiomara", "Tailscale"]),
    ("We store the embeddings in Milvus and search them with FAISS.", ["Milvus", "FAISS"]),
    ("Deploy it with Terraform, then check the Datadog alerts.", ["Terraform", "Datadog"]),
    ("Tadeusz will lead the Anthropic partnership this year.", ["Tadeusz", "Anthropic"]),
    ("My account number starts with the code Zephyrine.", ["Zephyrine"]),
    ("The meeting with Aoife and Niamh moved to Thursday.", ["Aoife", "Niamh"]),
    ("Install voxindex and point the LiveKit agent at it.", ["voxindex", "LiveKit"]),
    ("Order two more Qualcomm Snapdragon boards for the lab.", ["Qualcomm", "Snapdragon"]),
    ("Send the contract to Bartholomew Okonkwo in Lagos.", ["Okonkwo"]),
    ("The new hire, Saoirse, starts on the Postgres migration.", ["Saoirse", "Postgres"]),
    ("Refill the Lisinopril and the Atorvastatin prescriptions.", ["Lisinopril", "Atorvastatin"]),
    ("Put the Jira ticket in the Confluence page for Ngozi.", ["Jira", "Confluence", "Ngozi"]),
    ("The Pydantic models fail when FastAPI validates the request.", ["Pydantic", "FastAPI"]),
    ("Call Joaquin about the Zendesk escalation.", ["Joaquin", "Zendesk"]),
    ("Our Okta login broke after the Cloudflare change.", ["Okta", "Cloudflare"]),
    ("Dr. Oyelaran reviewed the Humira dosage.", ["Oyelaran", "Humira"]),
    ("The Kafka consumer lags behind the Redis cache.", ["Kafka", "Redis"]),
    ("Book a table at Nobu for Mrs. Przybylski.", ["Nobu", "Przybylski"]),
    ("Transfer the funds to the Revolut account of Eoin.", ["Revolut", "Eoin"]),
    ("The Figma mockups are ready for Anjali to review.", ["Figma", "Anjali"]),
    ("Run the Ansible playbook on the Proxmox hosts.", ["Ansible", "Proxmox"]),
]
# said without any key term; each is streamed with the key terms of ITEMS[i]
NEGATIVES = [
    "The weather was lovely, so we walked along the river.",
    "Please close the door when you leave the office.",
    "I will call you back after lunch tomorrow.",
    "The train to the city leaves at half past eight.",
    "Can you send me the notes from the last meeting?",
    "We need more paper for the printer upstairs.",
    "The children played football in the park all afternoon.",
    "Turn left at the second light and park behind the bank.",
    "He bought bread, milk and a dozen eggs.",
    "The report is due at the end of the month.",
    "She plays the piano every evening before dinner.",
    "Our flight was delayed by almost two hours.",
]
# a scripted agent dialogue: (agent's turn, sent as context; the user's spoken reply)
DIALOGUE = [
    ("Hello, this is Halvorsen Dental. Who am I speaking with?", "Hi, this is Ingrid Halvorsen calling."),
    ("Thanks Ingrid. Are you booked with Dr. Okafor or Dr. Lindqvist?", "I usually see Dr. Lindqvist."),
    ("Dr. Lindqvist has openings Tuesday or Thursday.", "Thursday works better for me."),
    ("Is this for a cleaning or the Invisalign check?", "It is the Invisalign check."),
    ("Got it. Should I text the reminder to your Verizon number?", "Yes, text my Verizon number please."),
    ("Anything else, like the Sensodyne samples you asked about?", "Yes, please keep two Sensodyne samples."),
]
GAP = np.zeros(12800, np.float32)


def says(text: str, term: str) -> bool:
    return " ".join(normalized_words(term)) in " ".join(normalized_words(text))


def other_words_errors(reference: str, hypothesis: str, terms: list[str]) -> tuple[int, int]:
    """(errors on words outside the key terms, how many such words): edit-distance alignment;
    a substitution or deletion of a key-term word and an insertion next to one are not counted."""
    ref, hyp = normalized_words(reference), normalized_words(hypothesis)
    in_term = [False] * len(ref)
    for term in terms:
        t = normalized_words(term)
        for i in range(len(ref) - len(t) + 1):
            if ref[i : i + len(t)] == t:
                in_term[i : i + len(t)] = [True] * len(t)
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    errors, i, j = 0, n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            errors += ref[i - 1] != hyp[j - 1] and not in_term[i - 1]
            i, j = i - 1, j - 1
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            errors += not in_term[i - 1]
            i -= 1
        else:
            near_term = (i > 0 and in_term[i - 1]) or (i < n and in_term[i])
            errors += not near_term
            j -= 1
    return errors, sum(not t for t in in_term)


Control = tuple[int, int, dict[str, str]]  # (at sample, once this many utterances ended, message)


async def stream(url: str, audio: np.ndarray, controls: list[Control] | None = None) -> str:
    """Stream ``audio`` at twice real time, sending each control message at its sample once
    that many utterances have ended. The text of every final."""
    texts: list[str] = []
    ended = 0
    async with websockets.connect(url, max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"

        async def read() -> None:
            nonlocal ended
            async for raw in ws:
                m = json.loads(raw)
                texts.extend([m["text"]] if m["type"] == "final" else [])
                ended += m["type"] == "speech_ended"

        reader = asyncio.create_task(read())
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        pending = sorted(controls or [], key=lambda c: c[0])
        for start in range(0, pcm.size, 1600):
            while pending and pending[0][0] <= start:
                _, after, message = pending.pop(0)
                async with asyncio.timeout(30):
                    while ended < after:
                        await asyncio.sleep(0.02)
                await ws.send(json.dumps(message))
            await ws.send(pcm[start : start + 1600].tobytes())
            await asyncio.sleep(0.05)
        await ws.send(json.dumps({"type": "close"}))
        await asyncio.wait_for(reader, 120)
    return " ".join(texts)


async def many(jobs: list[Any], width: int) -> list[str]:
    gate = asyncio.Semaphore(width)

    async def one(job: Any) -> str:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def glossary(tokenizer: Any) -> list[str]:
    """Every ITEMS term that fits the key-term budget, in order (what a stream would be primed with)."""
    builder = PromptBuilder(tokenizer)
    fitted = tokenizer.decode(builder(Prompting(tuple(t for _, ts in ITEMS for t in ts)), []))
    return [t for _, ts in ITEMS for t in ts if f" {t}," in f" {fitted[:-1]},"]


async def run(base: str, synth: Any, width: int, terms_all: list[str]) -> dict[str, Any]:
    def url(terms: list[str]) -> str:
        query = urlencode({"keyterms": terms}, doseq=True)
        return f"{base}/v1/stream?{query}"

    spoken = [np.concatenate([GAP, synth(text), GAP]) for text, _ in ITEMS]
    plain = await many([stream(url([]), a) for a in spoken], width)
    primed = await many([stream(url(terms), a) for a, (_, terms) in zip(spoken, ITEMS, strict=True)], width)
    negatives = [np.concatenate([GAP, synth(text), GAP]) for text in NEGATIVES]
    neg_plain = await many([stream(url([]), a) for a in negatives], width)
    neg_primed = await many([stream(url(ITEMS[i][1]), a) for i, a in enumerate(negatives)], width)

    neg_glossary = await many([stream(url(terms_all), a) for a in negatives], width)

    def recall(texts: list[str]) -> float:
        hits = [says(t, term) for t, (_, terms) in zip(texts, ITEMS, strict=True) for term in terms]
        return sum(hits) / len(hits)

    def other_wer(texts: list[str]) -> float:
        counts = [other_words_errors(ref, t, terms) for t, (ref, terms) in zip(texts, ITEMS, strict=True)]
        return sum(e for e, _ in counts) / sum(n for _, n in counts)

    offered = [(t, term) for i, t in enumerate(neg_primed) for term in ITEMS[i][1]]
    offered += [(t, term) for t in neg_glossary for term in terms_all]
    inserted = [(t, term) for t, term in offered if says(t, term)]
    report: dict[str, Any] = {
        "utterances": len(ITEMS),
        "terms": sum(len(t) for _, t in ITEMS),
        "recall": {"without": recall(plain), "with": recall(primed)},
        "other_words_wer": {"without": other_wer(plain), "with": other_wer(primed)},
        "negatives": len(NEGATIVES),
        "false_insertions": {
            "offered": len(offered),
            "inserted": len(inserted),
            "rate": len(inserted) / len(offered),
        },
        "negatives_wer": {
            "without": corpus_wer(list(zip(NEGATIVES, neg_plain, strict=True))),
            "with": corpus_wer(list(zip(NEGATIVES, neg_primed, strict=True))),
            "with_glossary": corpus_wer(list(zip(NEGATIVES, neg_glossary, strict=True))),
        },
        "glossary_terms": len(terms_all),
        "pairs": [
            {"ref": ref, "without": a, "with": b} for (ref, _), a, b in zip(ITEMS, plain, primed, strict=True)
        ],
        "inserted": inserted,
    }
    # the scripted dialogue: one stream, the agent's turns as context messages
    parts, controls = [GAP], []
    for n, (agent, user) in enumerate(DIALOGUE):
        controls.append((sum(p.size for p in parts), n, {"type": "context", "text": agent}))
        parts += [synth(user), GAP, GAP]
    audio = np.concatenate(parts)
    users = " ".join(user for _, user in DIALOGUE)
    no_context = await stream(url([]), audio)
    with_context = await stream(url([]), audio, controls)
    report["dialogue"] = {
        "turns": len(DIALOGUE),
        "wer_without_context": corpus_wer([(users, no_context)]),
        "wer_with_context": corpus_wer([(users, with_context)]),
        "without": no_context,
        "with": with_context,
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="tiny.en:int8")
    parser.add_argument("--streams", type=int, default=4, help="streams at once")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    name, _, compute = args.model.partition(":")
    model = load_model(name, device="cpu", compute_type=compute or "auto")
    base, stop = _start_server(Settings(no_auth=True, max_streams=max(8, args.streams)), model)
    try:
        report = asyncio.run(run(base, make_synth(), args.streams, glossary(model.tokenizer)))
    finally:
        stop()
    report["model"] = f"{name} {model.compute_type}"
    r, w, f, d = report["recall"], report["other_words_wer"], report["false_insertions"], report["dialogue"]
    nw = report["negatives_wer"]
    print(
        f"{report['model']}: {report['utterances']} utterances, {report['terms']} key terms\n"
        f"  recall          without {100 * r['without']:.1f} %  with {100 * r['with']:.1f} %  "
        f"(+{100 * (r['with'] - r['without']):.1f} points)\n"
        f"  other-word WER  without {100 * w['without']:.1f} %  with {100 * w['with']:.1f} %\n"
        f"  false insertions {f['inserted']}/{f['offered']} ({100 * f['rate']:.1f} %); "
        f"(per-utterance terms, and a {report['glossary_terms']}-term glossary); WER of those utterances "
        f"without {100 * nw['without']:.1f} %  with {100 * nw['with']:.1f} %  "
        f"with the glossary {100 * nw['with_glossary']:.1f} %\n"
        f"  dialogue ({d['turns']} user turns) WER without context {100 * d['wer_without_context']:.1f} %  "
        f"with {100 * d['wer_with_context']:.1f} %"
    )
    for p in report["pairs"]:
        print(f"    {p['ref']}\n      - {p['without']}\n      + {p['with']}")
    print(f"    dialogue - {d['without']}\n    dialogue + {d['with']}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
