"""Which languages and tasks a model serves: one check for every protocol's options."""

from __future__ import annotations

from voxindex.errors import InvalidRequestError, UnsupportedLanguageError

TASKS = ("transcribe", "translate")
ENGLISH = frozenset({"en"})  # what an English-only model reads


def check_language(code: str | None, languages: frozenset[str]) -> str | None:
    """``code`` lower-cased ("auto" and None: detect), or UnsupportedLanguageError when the model
    does not know it (an English-only model knows only "en")."""
    if code is None or code == "auto":
        return code
    code = code.split("-")[0].lower()
    if not (code.isalpha() and 2 <= len(code) <= 3):
        raise InvalidRequestError(f"language must be a code like 'en' or 'auto', got {code[:20]!r}")
    if code not in languages:
        if languages == ENGLISH:
            raise UnsupportedLanguageError(
                f"this server's model is English-only; language={code!r} unsupported"
            )
        raise UnsupportedLanguageError(f"the model does not know language {code!r}")
    return code


def check_task(task: str, languages: frozenset[str]) -> str:
    """``transcribe`` or ``translate`` (into English, multilingual models only)."""
    if task not in TASKS:
        raise InvalidRequestError(f"task must be transcribe or translate, got {task[:20]!r}")
    if task == "translate" and languages == ENGLISH:
        raise UnsupportedLanguageError(
            "this server's model is English-only and cannot translate; serve a multilingual model (e.g. base)"
        )
    return task
