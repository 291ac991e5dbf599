"""Generated code for protos/pvad/v1/*.proto lives in pvad/v1/; this keeps the two in step.

`build()` regenerates it with grpcio-tools. `stale()` compares the descriptor compiled from the
.proto files now with the one embedded in the committed pvad_pb2.py, message for message, so the
check does not depend on the grpcio-tools version that formatted the files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("pvad/v1/*.proto"))


def _protoc(args: list[str]) -> None:
    try:
        from grpc_tools import protoc
    except ImportError as err:  # pragma: no cover - dev dependency
        raise RuntimeError("grpcio-tools is needed: pip install 'pvad[dev]'") from err
    include = str(Path(protoc.__file__).parent / "_proto")
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", *args, *map(str, proto_files())])
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}")


def build(out_dir: Path = ROOT) -> list[Path]:
    """Regenerate pvad/v1/*_pb2*.py(i) under `out_dir`."""
    _protoc([f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"])
    return sorted((out_dir / "pvad" / "v1").glob("*_pb2*"))


def stale() -> list[str]:
    """Names of .proto files whose committed generated code differs from the source; [] if in step."""
    from pvad.v1 import pvad_pb2

    committed = {pvad_pb2.DESCRIPTOR.name: pvad_pb2.DESCRIPTOR.serialized_pb}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        _protoc([f"--descriptor_set_out={out}"])
        fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    differing = []
    for f in fresh.file:
        _drop_json_names(f)  # protoc adds them to descriptor sets, not to generated modules
        old = committed.get(f.name)
        if old is None or descriptor_pb2.FileDescriptorProto.FromString(old) != f:
            differing.append(f.name)
    return differing


def _drop_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    def walk(messages) -> None:
        for m in messages:
            for field in m.field:
                field.ClearField("json_name")
            walk(m.nested_type)

    walk(file.message_type)
