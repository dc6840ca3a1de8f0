"""The batched inference engine: per-stream state, the scheduler loop, decoding and commit policy."""
