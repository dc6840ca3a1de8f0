"""The transcript store (source of truth), embeddings, vector index and hybrid search."""
