"""The decoder's model runner, split as gpt-fast and vLLM split it: ``forward`` (the decoder's
forward pass), ``batch`` (the persistent batch of per-slot state), ``sampler`` (logit rules,
choice, end of rows) and ``model_runner`` (slots in, one step, readings out)."""

from voxindex.engine.runner.model_runner import BUCKETS, Runner
from voxindex.engine.runner.sampler import NEG

__all__ = ["BUCKETS", "NEG", "Runner"]
