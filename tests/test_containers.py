"""Container files: Dockerfiles, compose file, docker configs, and the health probe over mTLS.

No Docker engine runs here; the compose file is checked by `docker-compose config` where that
command exists, and by its structure everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml

from pvad.certs import SERVER_NAME, CertPaths, make_dev_pki, server_credentials

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, CertPaths]:
    return make_dev_pki(tmp_path_factory.mktemp("pki"), cameras=["cam-1"], subscribers=["demo"])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file():
    r = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr



def _dockerfile(name: str) -> str:
    return (ROOT / "docker" / name).read_text()


def _healthcheck_script() -> str:
    m = re.search(r'COPY [^\n]*<<"EOF" /usr/local/bin/pvad-healthcheck\n(.*?)\nEOF\n', _dockerfile("server.Dockerfile"), re.S)
    assert m, "server.Dockerfile embeds the pvad-healthcheck script as a heredoc"
    return m.group(1)


@pytest.fixture(scope="module")
def health_server(pki):
    health = pytest.importorskip("grpc_health.v1.health")
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(pki["server"]))
    server.start()
    yield servicer, health_pb2, f"127.0.0.1:{port}"
    server.stop(grace=None)


def _run_probe(addr: str, paths: CertPaths) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        PVAD_HEALTH_ADDR=addr,
        PVAD_HEALTH_CA=str(paths.ca),
        PVAD_HEALTH_CERT=str(paths.cert),
        PVAD_HEALTH_KEY=str(paths.key),
        PVAD_HEALTH_TIMEOUT="3",
    )
    return subprocess.run(
        [sys.executable, "-c", _healthcheck_script()], env=env, capture_output=True, text=True, timeout=30
    )


def test_healthcheck_probe_over_mtls(health_server, pki, tmp_path):
    servicer, health_pb2, addr = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    ok = _run_probe(addr, pki["subscriber/demo"])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "SERVING"

    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert _run_probe(addr, pki["subscriber/demo"]).returncode == 1
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)

    missing = CertPaths(ca=pki["server"].ca, cert=tmp_path / "none.pem", key=tmp_path / "none.key")
    bad = _run_probe(addr, missing)
    assert bad.returncode == 1 and "pvad certs --out DIR" in bad.stderr


def test_server_dockerfile():
    text = _dockerfile("server.Dockerfile")
    assert re.search(r"^FROM .*(nvidia/cuda|pytorch/pytorch)", text, re.M) or "nvidia/cuda:" in text
    assert re.search(r'pip install [^\n]*"\.\[server,yolo,mqtt\]"', text)  # torch, detector, MQTT bridge
    assert re.search(r"^EXPOSE 50051$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*pvad-healthcheck", text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["pvad", "server", "--config", "/etc/pvad/server.yaml"\]$', text, re.M)


def test_camera_dockerfile():
    text = _dockerfile("camera.Dockerfile")
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", text, re.M) and "python:3.11-slim" in text
    assert re.search(r'pip install "\.\[camera\]"', text) and "torch" not in text.split("FROM", 1)[1].split("ENTRYPOINT")[0].replace("PyTorch", "")
    assert "L4T" in text or "Jetson" in text
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["pvad", "camera", "--config", "/etc/pvad/camera.yaml"\]$', text, re.M)


def test_docker_configs_validate():
    from pvad.config import CameraConfig, ServerConfig, load_config

    server = load_config(ROOT / "configs/docker/server.yaml")
    camera = load_config(ROOT / "configs/docker/camera.yaml")
    assert isinstance(server, ServerConfig) and isinstance(camera, CameraConfig)
    for p in (ROOT / "configs/docker/server.yaml", ROOT / "configs/docker/camera.yaml"):
        assert yaml.safe_load(p.read_text())["kind"] in ("server", "camera")
    assert server.listen == "0.0.0.0:50051"
    assert camera.server == "server:50051"
    assert camera.tls.server_name == SERVER_NAME
    for tls in (server.tls, camera.tls):
        for p in (tls.ca, tls.cert, tls.key):
            assert str(p).startswith("/run/secrets/"), p


def _secret_targets(service: dict) -> set[str]:
    return {f"/run/secrets/{s if isinstance(s, str) else s.get('target', s['source'])}" for s in service["secrets"]}


def test_compose_file_structure():
    """`docker compose config` is unavailable here (no compose plugin); check the structure instead."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services, secrets = compose["services"], compose["secrets"]
    assert {k for k, v in services.items() if not v.get("profiles")} == {"server", "camera", "mqtt"}  # the default
    assert services["mqtt"]["image"].startswith("eclipse-mosquitto")
    server, camera = services["server"], services["camera"]

    assert server["build"]["dockerfile"] == "docker/server.Dockerfile"
    assert camera["build"]["dockerfile"] == "docker/camera.Dockerfile"
    for svc in (server, camera):
        assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
    assert server["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert any(str(p).endswith("50051") for p in server["ports"])
    assert server["healthcheck"]["test"][:2] == ["CMD", "pvad-healthcheck"]
    assert camera["depends_on"]["server"]["condition"] == "service_healthy"

    # configs mounted read-only where the entrypoints read them; they exist in the repo
    for svc, cfg in ((server, "server.yaml"), (camera, "camera.yaml")):
        mount = next(v for v in svc["volumes"] if v["target"] == f"/etc/pvad/{cfg}")
        assert mount["read_only"] is True and mount["type"] == "bind"
        assert (ROOT / mount["source"]).resolve() == (ROOT / "configs/docker" / cfg).resolve()

    # the event log directory is a named volume
    from pvad.config import load_config

    server_cfg = load_config(ROOT / "configs/docker/server.yaml")
    camera_cfg = load_config(ROOT / "configs/docker/camera.yaml")
    log_mount = next(v for v in server["volumes"] if v["target"] == str(server_cfg.event_log.path.parent))
    assert log_mount["type"] == "volume" and log_mount["source"] in compose["volumes"]

    # every TLS path the configs name is delivered as a secret to that service, from a file
    for svc, tls in ((server, server_cfg.tls), (camera, camera_cfg.tls)):
        assert {str(tls.ca), str(tls.cert), str(tls.key)} <= _secret_targets(svc)
    assert "/run/secrets/pvad_probe_cert" in _secret_targets(server)
    for name in (*server["secrets"], *camera["secrets"]):
        assert set(secrets[name]) == {"file"}
    assert secrets["pvad_camera_cert"]["file"].endswith(f"/camera-{camera_cfg.camera_id}.pem")
    assert secrets["pvad_server_key"]["file"].endswith("/server.key")

    # the camera's video is mounted where its config reads it
    assert any(v["target"] == camera_cfg.capture.source for v in camera["volumes"])


def test_no_secret_material_in_yaml():
    for p in [ROOT / "docker-compose.yml", *sorted((ROOT / "configs").rglob("*.yaml"))]:
        text = p.read_text()
        assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text, p


def test_dockerignore_keeps_secrets_out():
    lines = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".pvad", ".venv", ".git", "**/*.key", "**/*.pem"} <= lines
    assert "README.md" not in lines and "pyproject.toml" not in lines  # `pip install .` needs them
