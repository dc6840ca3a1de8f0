"""The corpus and queries of benchmarks/search_quality.py: what the project's recordings and
test texts look like once our engine has heard them, and questions a user would ask of them.

Sources, one stream per family: the 11 real recordings (``tests/fixtures``: LibriVox prose, the
PocketSphinx cards and command), the project's written test texts (``PROSE``, ``HARVARD``, the
conversation and turn-taking lines) and 34 more Harvard sentences as distractors, spoken by
Piper. Every source is transcribed offline by tiny.en, so the index holds what Whisper heard
("10 of Clothes." for "ten of clubs"), as it does in production. A query names the source whose
words answer it (``None``: never said).

The queries were written before the scoring was designed (the distractors were added after):
paraphrases, exact keywords, names, numbers said as words and asked as digits (and the
reverse), and things nobody said, some of them close to what was (a card not drawn, a direction
not given, a name from the same novel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from voxindex.audio import Float32Array, decode_file


@dataclass(frozen=True)
class Query:
    text: str
    answer: str | None  # the key of the source that answers it; None: never said
    kind: str  # paraphrase | keywords | name | number | unsaid


def q(text: str, answer: str | None, kind: str) -> Query:
    return Query(text, answer, kind)


QUERIES = [
    # paraphrases: the meaning, in other words
    q("when does the airport train leave", "prose-8", "paraphrase"),
    q("how often is there a train to the airport", "prose-8", "paraphrase"),
    q("deadline for feedback on the campaign", "prose-2", "paraphrase"),
    q("money for the new office", "prose-1", "paraphrase"),
    q("sales growth in the north", "prose-10", "paraphrase"),
    q("hand in travel costs by the end of the month", "prose-4", "paraphrase"),
    q("customers want search to improve", "prose-3", "paraphrase"),
    q("meeting the designers about the website", "prose-6", "paraphrase"),
    q("short pause before we go on", "prose-11", "paraphrase"),
    q("cold rainy weather", "prose-5", "paraphrase"),
    q("when will the app be ready to test", "prose-9", "paraphrase"),
    q("reserve a table for four on friday", "turn-table", "paraphrase"),
    q("the app broke after the update", "turn-update", "paraphrase"),
    q("could we meet on tuesday instead", "turn-tuesday", "paraphrase"),
    q("quarterly report deadline", "lines-0", "paraphrase"),
    q("send the bill to accounting", "lines-1", "paraphrase"),
    q("postpone the meeting by a week", "lines-2", "paraphrase"),
    q("everyone got the new release", "lines-4", "paraphrase"),
    q("fishing for salmon", "harvard-11", "paraphrase"),
    q("feeding the pigs", "harvard-7", "paraphrase"),
    q("a cup of tea in the evening", "harvard-15", "paraphrase"),
    q("he was selfish and cold hearted", "librivox-0890", "paraphrase"),
    q("if he had a nicer wife he would be more respectable", "librivox-0920", "paraphrase"),
    # exact keywords
    q("birch canoe", "harvard-0", "keywords"),
    q("planning meeting", "prose-0", "keywords"),
    q("marketing campaign draft", "prose-2", "keywords"),
    q("chicken leg", "harvard-3", "keywords"),
    q("stockings", "harvard-9", "keywords"),
    q("pink salmon", "harvard-11", "keywords"),
    q("ill disposed young man", "librivox-0880", "keywords"),
    q("made amiable himself", "librivox-0930", "keywords"),
    q("what time does the next train leave", "turn-train", "keywords"),
    q("invoice", "lines-1", "keywords"),
    # names
    q("John Dashwood", "librivox-0870", "name"),
    q("Dashwood", "librivox-0870", "name"),
    q("Friday evening", "turn-table", "name"),
    # numbers: said as words, asked as digits, or the reverse
    q("go forward 10 meters", "goforward", "number"),
    q("go forward ten meters", "goforward", "number"),
    q("eight of spades", "cards-005", "number"),
    q("7 of hearts", "cards-005", "number"),
    q("sales up 12 percent", "prose-10", "number"),
    q("a train every 30 minutes", "prose-8", "number"),
    q("4 hours of steady work", "harvard-8", "number"),
    q("account number 4 5 7 2", "turn-account", "number"),
    q("continue in 10 minutes", "prose-11", "number"),
    # never said
    q("when does the flight to london board", None, "unsaid"),
    q("the password for the wifi", None, "unsaid"),
    q("who won the football match", None, "unsaid"),
    q("recipe for chocolate cake", None, "unsaid"),
    q("the server crashed at midnight", None, "unsaid"),
    q("book a dentist appointment", None, "unsaid"),
    q("how much is a parking ticket", None, "unsaid"),
    q("nine of diamonds", None, "unsaid"),
    q("go backward five meters", None, "unsaid"),
    q("hotel reservation for saturday", None, "unsaid"),
    q("elephants at the zoo", None, "unsaid"),
    q("sign the contract with the lawyer", None, "unsaid"),
    q("the printer is out of paper", None, "unsaid"),
    q("Willoughby", None, "unsaid"),
    q("ice cream flavours", None, "unsaid"),
    q("quantum computing research", None, "unsaid"),
    q("turn left at the traffic lights", None, "unsaid"),
    q("the baby is asleep", None, "unsaid"),
    q("how do I reset my router", None, "unsaid"),
    q("interest rates went up", None, "unsaid"),
]


# Distractors: more Harvard sentences (IEEE 1969, public domain, lists 2-5), none the answer to a
# query, some close to one ("It snowed, rained, and hailed" beside "cold and rainy", "seven books"
# beside "7 of hearts", "fifty bonds", "the third week").
DISTRACTORS = [
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
    "A king ruled the state in the early days.",
    "The ship was torn apart on the sharp reef.",
    "Sickness kept him home the third week.",
    "The wide road shimmered in the hot sun.",
    "The lazy cow lay in the cool grass.",
    "Lift the square stone over the fence.",
    "The rope will bind the seven books at once.",
    "Hop over the fence and plunge in.",
    "The friendly gang left the drug store.",
    "Mesh wire keeps chicks inside.",
]


@dataclass(frozen=True)
class Source:
    key: str
    stream: str  # the stream it is a segment of (its family)
    said: str  # what was said (the recording's transcript, or the text Piper spoke)
    heard: str  # what tiny.en heard


def sources(transcribe: Callable[[Float32Array], str], synth: Callable[[str], Float32Array]) -> list[Source]:
    """Every source, heard by ``transcribe`` (real recordings as they are, texts spoken by ``synth``)."""
    from tests.conftest import HARVARD, PROSE, recordings
    from tests.conversations import PIPER_LINES
    from tests.turn_corpus import PIPER

    out = []
    for r in recordings():
        key = f"librivox-{r.path.stem.rsplit('-', 1)[1]}" if r.corpus == "librivox" else r.path.stem
        stream = "librivox" if r.corpus == "librivox" else ("command" if key == "goforward" else "cards")
        out.append(Source(key, stream, r.transcript, transcribe(decode_file(r.path))))
    written = {"prose": PROSE, "harvard": HARVARD, "lines": PIPER_LINES, "distractor": DISTRACTORS}
    for family, texts in written.items():
        out += [Source(f"{family}-{i}", family, t, transcribe(synth(t))) for i, t in enumerate(texts)]
    for spec in PIPER:
        text = spec.source.removeprefix("piper:").replace("|", " ")
        out.append(Source(f"turn-{spec.name}", "turns", text, transcribe(synth(text))))
    return out
