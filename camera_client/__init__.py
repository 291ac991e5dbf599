"""The camera client: capture, anonymize on the device, stream over mutual TLS gRPC."""
