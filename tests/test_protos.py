"""Generated code in pvad/v1 is in step with protos/ (fails when someone edits the .proto only)."""

import shutil


from pvad import protos


def test_generated_code_matches_proto_files():
    assert protos.stale() == []


def test_staleness_is_detected(tmp_path, monkeypatch):
    copy = tmp_path / "protos"
    shutil.copytree(protos.PROTO_DIR, copy)
    f = copy / "pvad" / "v1" / "pvad.proto"
    f.write_text(f.read_text().replace("float server_ms = 8;", "float server_ms = 8;\n  string extra = 99;"))
    monkeypatch.setattr(protos, "PROTO_DIR", copy)
    assert protos.stale() == ["pvad/v1/pvad.proto"]


def test_services_are_generated():
    from pvad.v1 import pvad_pb2, pvad_pb2_grpc

    assert set(pvad_pb2.DESCRIPTOR.services_by_name) == {"Ingest", "Alarms"}
    assert hasattr(pvad_pb2_grpc, "IngestStub") and hasattr(pvad_pb2_grpc, "AlarmsServicer")
