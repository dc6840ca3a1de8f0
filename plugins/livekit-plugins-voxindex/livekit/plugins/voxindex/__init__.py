"""voxindex plugin for LiveKit Agents: streaming speech-to-text from a self-hosted voxindex server.

from livekit.plugins import voxindex
stt = voxindex.STT(base_url="https://stt.example.com", api_key="vxk_...")
"""

from livekit.agents import Plugin

from .log import logger
from .stt import STT, SpeechStream
from .version import __version__

__all__ = ["STT", "SpeechStream", "__version__"]


class VoxindexPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(VoxindexPlugin())
