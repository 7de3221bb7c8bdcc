"""The gRPC edge of the library: typed columns <-> protobuf, and the remote ``Client``.

Only this package (and the server in ``server/``) imports grpc and the generated code.
"""
