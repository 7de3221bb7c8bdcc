"""The generated gRPC code is what the .proto files and the pinned grpcio-tools produce."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fresh = gen.generate(tmp_path)
    assert fresh, "no .proto files found"
    stale = [
        str(path.relative_to(tmp_path)) for path in fresh
        if not (ROOT / path.relative_to(tmp_path)).is_file()
        or (ROOT / path.relative_to(tmp_path)).read_bytes() != path.read_bytes()
    ]
    assert stale == [], f"generated code is stale: run 'python scripts/gen_proto.py' and commit {stale}"
