"""The command line: ``voxindex serve | transcribe | stream | index | search | bench | token | keys``
(``main``); one module per command that is more than a few lines."""

from voxindex.cli.main import main

__all__ = ["main"]
