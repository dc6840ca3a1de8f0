# voxindex: the streaming speech-to-text and search server, with its default model baked in.
#
#   GPU (default): docker build -t voxindex .
#   CPU only:      docker build -t voxindex:cpu --build-arg BASE=ubuntu:24.04 \
#                    --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu --build-arg EXTRAS=milvus .
#
# Both variants run the same Ubuntu 24.04 userland; the GPU one adds NVIDIA's CUDA runtime
# (the driver comes from the host through the NVIDIA container toolkit: driver >= 580 for
# CUDA 13). The GPU variant is PyTorch 2.11 on CUDA 13.0, what the GPU benchmark runs on
# (BENCHMARKS.md, "GPU"), with NVML for /readyz and /metrics and FAISS's GPU build (its wheel
# brings its own CUDA 12 libraries) in place of faiss-cpu. Checked with hadolint
# (tests/deploy/test_manifests.py).
ARG BASE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04

FROM ${BASE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG TORCH_VERSION=2.11.0
ARG EXTRAS=milvus,gpu
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the index that matches the variant (a plain `torch` would pull CUDA on CPU)
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md /src/
COPY server /src/server
# weights only, not their runtimes: the speaker encoder's (diarize), Smart Turn v3.2's (end of turn)
RUN pip install --no-deps "resemblyzer==0.1.4" "pipecat-ai==1.14.0"
# faiss-cpu and faiss-gpu-cu12 are one `faiss` module, onnxruntime and onnxruntime-gpu one
# `onnxruntime`: with the gpu extra, the GPU builds stay (Smart Turn then runs on the GPU)
RUN pip install "/src[${EXTRAS}]" \
 && case ",${EXTRAS}," in *,gpu,*) pip uninstall -y faiss-cpu onnxruntime \
      && pip install --no-deps --force-reinstall "faiss-gpu-cu12>=1.8" "onnxruntime-gpu>=1.17" ;; esac
# Bake the model in: convert the packaged tiny.en weights once, at build time, into the cache
# the server reads, and check that it transcribes its own sample.
ENV VOXINDEX_CACHE_DIR=/opt/voxindex/cache
RUN voxindex transcribe --device cpu "$(python -c 'import voxindex.samples as s, pathlib; print(pathlib.Path(s.__file__).parent / "goforward.wav")')"

FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin voxindex \
 && mkdir -p /data \
 && chown voxindex /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=voxindex /opt/voxindex/cache /opt/voxindex/cache
COPY clients/web /opt/voxindex/web
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VOXINDEX_HOST=0.0.0.0 \
    VOXINDEX_PORT=8080 \
    VOXINDEX_DATA_DIR=/data \
    VOXINDEX_CACHE_DIR=/opt/voxindex/cache \
    VOXINDEX_WEB_DIR=/opt/voxindex/web \
    VOXINDEX_LOG_FORMAT=json \
    VOXINDEX_FORWARDED_ALLOW_IPS=*
USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["voxindex"]
CMD ["serve"]
