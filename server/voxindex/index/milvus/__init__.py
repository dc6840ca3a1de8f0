"""The shared transcript index on Milvus (``--store milvus://host:port/collection``)."""

from voxindex.index.milvus.expressions import MilvusUrl, expression, segment_key
from voxindex.index.milvus.index import MilvusIndex

__all__ = ["MilvusIndex", "MilvusUrl", "expression", "segment_key"]
