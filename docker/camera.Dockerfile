# syntax=docker/dockerfile:1.7
# pvad camera client (CPU): capture -> anonymize -> gRPC stream over mTLS.
#
#   docker build -f docker/camera.Dockerfile -t pvad-camera:dev --build-arg PVAD_UID=$(id -u) .
#
# The config is mounted at /etc/pvad/camera.yaml, the camera's certificate and key arrive as
# secrets under /run/secrets, the video (or /dev/videoN, or an rtsp:// URL in the config) is mounted.
#
# The image installs `pvad[camera]`: no PyTorch. The encoder runs from the ONNX export that ships in
# models/weights (made by `pvad export`) through onnxruntime; configs/docker/camera.yaml selects it.
#
# On a Jetson (L4T): start FROM an L4T base matching the board's JetPack (e.g.
# nvcr.io/nvidia/l4t-jetpack:r36.x), install NVIDIA's onnxruntime-gpu wheel for that JetPack
# (it carries the TensorRT and CUDA execution providers, which the camera then picks before the CPU
# one), keep the preinstalled GStreamer-enabled OpenCV (`pip install --no-deps .` plus the other
# base dependencies), and run the container with `runtime: nvidia` and the camera device
# (/dev/video0 or the CSI argus socket) passed through. See the README's "Jetson" section for
# building a TensorRT engine from the same ONNX file.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG PVAD_UID=1000

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libgl1/libglib2.0-0 for opencv-python; ffmpeg libraries come with the OpenCV wheel.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/pvad/src
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ".[camera]" \
 && pvad --help > /dev/null

RUN useradd --uid "${PVAD_UID}" --create-home --shell /usr/sbin/nologin pvad \
 && usermod -a -G video pvad \
 && mkdir -p /etc/pvad
USER pvad
WORKDIR /home/pvad

ENTRYPOINT ["pvad", "camera", "--config", "/etc/pvad/camera.yaml"]
