"""Generated gRPC/protobuf code for protos/pvad/v1/pvad.proto (regenerate with `pvad protos build`)."""
