"""Checkpoint loading: CTranslate2 packages and transformers checkpoints, one model registry."""
