# syntax=docker/dockerfile:1.7
# pvad camera client (CPU): capture -> anonymize -> gRPC stream over mTLS.
#
#   docker build -f docker/camera.Dockerfile -t pvad-camera:dev --build-arg PVAD_UID=$(id -u) .
#
# The config is mounted at /etc/pvad/camera.yaml, the camera's certificate and key arrive as
# secrets under /run/secrets, the video (or /dev/videoN, or an rtsp:// URL in the config) is mounted.
#
# On a Jetson (L4T) the base would differ: start FROM an L4T image matching the board's JetPack
# (e.g. nvcr.io/nvidia/l4t-pytorch:r35.2.1-pth2.0-py3 or dustynv/l4t-pytorch), which is aarch64 and
# already carries NVIDIA's CUDA build of torch/torchvision and a GStreamer-enabled OpenCV. There,
# do not let pip replace them: install with `pip install --no-deps .` plus the remaining pure-Python
# dependencies (or a constraints file pinning the preinstalled torch), skip the CPU wheel index below,
# set the anonymizer's `device: cuda`, and run the container with `runtime: nvidia` and the camera
# device (/dev/video0 or the CSI argus socket) passed through.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG PVAD_UID=1000
# CPU-only torch wheels (the default PyPI linux wheels are CUDA builds of several GB); pip picks the
# "+cpu" build of the pinned version from this index.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

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
    pip install --extra-index-url "${TORCH_INDEX}" . \
 && pvad --help > /dev/null

RUN useradd --uid "${PVAD_UID}" --create-home --shell /usr/sbin/nologin pvad \
 && usermod -a -G video pvad \
 && mkdir -p /etc/pvad
USER pvad
WORKDIR /home/pvad

ENTRYPOINT ["pvad", "camera", "--config", "/etc/pvad/camera.yaml"]
