"""firstspike.v1: the device service (generated ``device_pb2`` / ``device_pb2_grpc``)."""
