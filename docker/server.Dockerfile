# syntax=docker/dockerfile:1.7
# pvad analysis server on an NVIDIA GPU.
#
#   docker build -f docker/server.Dockerfile -t pvad-server:dev --build-arg PVAD_UID=$(id -u) .
#
# Nothing secret goes into this image: the config is mounted at /etc/pvad/server.yaml, the TLS
# material arrives as secrets under /run/secrets (see docker-compose.yml), the event log lives on a
# volume at /var/lib/pvad. Needs the NVIDIA Container Toolkit on the host.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}

# uid of the non-root user; match the host user that owns the key files (they are mode 0600 and a
# compose file secret is a bind mount that keeps the host owner).
ARG PVAD_UID=1000

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/pvad/venv \
    PATH=/opt/pvad/venv/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# python 3.10 (Ubuntu 22.04); libgl1/libglib2.0-0 for OpenCV (opencv-python, needed by ultralytics).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-pip libgl1 libglib2.0-0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv "$VIRTUAL_ENV" \
 && pip install --no-cache-dir --upgrade pip setuptools wheel

WORKDIR /opt/pvad/src
COPY . .
# The default PyPI torch wheels for linux/x86_64 are CUDA builds; the base image adds the cuDNN
# runtime and the NVIDIA runtime hooks.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ".[server,yolo,mqtt]" \
 && pvad --help > /dev/null

# gRPC health probe over mTLS (the server accepts no connection without a client certificate),
# using any subscriber certificate signed by the deployment CA.
COPY --chmod=0755 <<"EOF" /usr/local/bin/pvad-healthcheck
#!/opt/pvad/venv/bin/python
"""Exit 0 when the pvad server answers grpc.health.v1 Check with SERVING (service "" by default)."""
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pvad.certs import CertPaths, channel_credentials, channel_options

env = os.environ.get
paths = CertPaths(
    ca=env("PVAD_HEALTH_CA", "/run/secrets/pvad_ca"),
    cert=env("PVAD_HEALTH_CERT", "/run/secrets/pvad_probe_cert"),
    key=env("PVAD_HEALTH_KEY", "/run/secrets/pvad_probe_key"),
)
try:
    creds = channel_credentials(paths)
    options = channel_options(env("PVAD_HEALTH_SERVER_NAME", "pvad-server"))
    with grpc.secure_channel(env("PVAD_HEALTH_ADDR", "127.0.0.1:50051"), creds, options=options) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=env("PVAD_HEALTH_SERVICE", "")),
            timeout=float(env("PVAD_HEALTH_TIMEOUT", "4")),
        )
except Exception as err:  # grpc.RpcError, ConfigError: say why, exit unhealthy
    print(f"unhealthy: {err}", file=sys.stderr)
    sys.exit(1)
status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
print(status)
sys.exit(0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1)
EOF

RUN useradd --uid "${PVAD_UID}" --create-home --shell /usr/sbin/nologin pvad \
 && mkdir -p /etc/pvad /var/lib/pvad \
 && chown pvad:pvad /var/lib/pvad
USER pvad
WORKDIR /var/lib/pvad

EXPOSE 50051
HEALTHCHECK --interval=15s --timeout=6s --start-period=180s --retries=3 CMD ["pvad-healthcheck"]
ENTRYPOINT ["pvad", "server", "--config", "/etc/pvad/server.yaml"]
