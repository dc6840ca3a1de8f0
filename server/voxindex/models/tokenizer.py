"""Whisper's byte-level BPE tokenizer and the special token ids the decoder needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from voxindex.errors import CheckpointFormatError


@dataclass(frozen=True)
class SpecialTokens:
    eot: int
    sot: int
    transcribe: int
    translate: int
    sot_prev: int
    no_speech: int
    no_timestamps: int
    timestamp_begin: int
    languages: dict[str, int]


class WhisperTokenizer:
    """Encodes prompts and decodes text; knows which ids are special or timestamps."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        vocab = tokenizer.get_vocab(with_added_tokens=True)

        def need(*names: str) -> int:
            for name in names:
                if name in vocab:
                    return int(vocab[name])
            raise CheckpointFormatError(f"tokenizer lacks special token {names[0]}")

        languages = {
            tok[2:-2]: int(i)
            for tok, i in vocab.items()
            if tok.startswith("<|")
            and tok.endswith("|>")
            and 2 <= len(tok) - 4 <= 3
            and tok[2:-2].isalpha()
            and tok[2:-2].islower()
        }
        self.special = SpecialTokens(
            eot=need("<|endoftext|>"),
            sot=need("<|startoftranscript|>"),
            transcribe=need("<|transcribe|>"),
            translate=need("<|translate|>"),
            sot_prev=need("<|startofprev|>"),
            no_speech=need("<|nospeech|>", "<|nocaptions|>"),
            no_timestamps=need("<|notimestamps|>"),
            timestamp_begin=need("<|notimestamps|>") + 1,
            languages=languages,
        )
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_file(cls, path: Path) -> WhisperTokenizer:
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises a bare Exception on malformed files
            raise CheckpointFormatError(f"{path}: unreadable tokenizer ({e})") from e

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ordinary tokens in ``ids`` (special and timestamp tokens dropped)."""
        return str(self._tok.decode([i for i in ids if i < self.special.eot], skip_special_tokens=True))

    def token_bytes(self, token_id: int) -> str:
        """Decoded text of one token (may be a partial UTF-8 sequence, shown as U+FFFD)."""
        return str(self._tok.decode([token_id], skip_special_tokens=False))

    def non_speech_tokens(self) -> list[int]:
        """Ids that would spell speaker tags, sound-effect brackets and music notes (as OpenAI's)."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        miscellaneous = set("♩♪♫♬♭♮♯")
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + list(miscellaneous):
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1 or symbol in miscellaneous:
                    result.add(tokens[0])
        return sorted(result)
