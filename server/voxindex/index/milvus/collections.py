"""The index's two Milvus collections: segments (text, BM25, MiniLM vector) and streams."""

from __future__ import annotations

from typing import Any

from voxindex.index.embed import DIMENSION
from voxindex.index.milvus.expressions import MilvusUrl


def connect(url: MilvusUrl, segments: str, streams: str, timeout_s: float) -> Any:
    """A client with both collections made (and a segments collection from before speaker
    labels given the field) and loaded."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=url.uri, token=url.token or "", timeout=timeout_s)
    if not client.has_collection(segments):
        create_segments(client, segments)
    elif "speaker" not in {f["name"] for f in client.describe_collection(segments)["fields"]}:
        from pymilvus import DataType  # a collection made before speaker labels existed

        client.add_collection_field(segments, "speaker", DataType.INT64, nullable=True)
    if not client.has_collection(streams):
        create_streams(client, streams)
    for name in (segments, streams):
        client.load_collection(name)  # a restarted Milvus holds them released
    return client


def create_segments(client: Any, name: str) -> None:
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("stream_id", DataType.VARCHAR, max_length=128)
    s.add_field("tenant", DataType.VARCHAR, max_length=256)
    s.add_field("segment_index", DataType.INT64)
    s.add_field("start", DataType.DOUBLE)
    s.add_field("end", DataType.DOUBLE)
    s.add_field("text", DataType.VARCHAR, max_length=8192, enable_analyzer=True)
    s.add_field("words", DataType.VARCHAR, max_length=65535)
    s.add_field("language", DataType.VARCHAR, max_length=16)
    s.add_field("model", DataType.VARCHAR, max_length=256)
    s.add_field("created", DataType.DOUBLE)
    s.add_field("recording", DataType.BOOL)
    s.add_field("replica", DataType.VARCHAR, max_length=128)
    s.add_field("speaker", DataType.INT64, nullable=True)  # a diarized segment's dominant label
    s.add_field("vector", DataType.FLOAT_VECTOR, dim=DIMENSION)
    s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    s.add_function(
        Function(
            name="text_bm25",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["sparse"],
        )
    )
    index = client.prepare_index_params()
    index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=s, index_params=index, consistency_level="Strong")


def create_streams(client: Any, name: str) -> None:
    from pymilvus import DataType, MilvusClient

    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("stream_id", DataType.VARCHAR, max_length=128, is_primary=True)
    s.add_field("tenant", DataType.VARCHAR, max_length=256)
    s.add_field("model", DataType.VARCHAR, max_length=256)
    s.add_field("created", DataType.DOUBLE)
    s.add_field("closed", DataType.DOUBLE)  # -1 while open
    s.add_field("metadata", DataType.VARCHAR, max_length=4096)
    s.add_field("replica", DataType.VARCHAR, max_length=128)
    s.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field
    index = client.prepare_index_params()
    index.add_index("unused", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=s, index_params=index, consistency_level="Strong")
