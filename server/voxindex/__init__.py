"""voxindex: self-hosted real-time speech-to-text and search server."""

__version__ = "0.1.0"
