"""Generated protobuf and gRPC code of the public API (``proto/featurestore/v1``).

Regenerate with ``python scripts/gen_proto.py``; a test fails when these files are stale.
"""
