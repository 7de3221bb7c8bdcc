"""Generate the Python protobuf and gRPC code of proto/featurestore/v1 into featurestore/v1/.

    python scripts/gen_proto.py            # write the generated files
    python scripts/gen_proto.py --out DIR  # write them under DIR instead (the staleness test)

Uses the grpcio-tools pinned in pyproject.toml's dev extra, so the output is reproducible.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = sorted((ROOT / "proto").rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    args = ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *[str(p) for p in PROTOS]]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    outputs = []
    for proto in PROTOS:
        stem = proto.relative_to(ROOT / "proto").with_suffix("")
        outputs += [out / f"{stem}_pb2.py", out / f"{stem}_pb2.pyi", out / f"{stem}_pb2_grpc.py"]
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
