"""The online store on a real three-node Redis Cluster (Valkey), started by the test."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from featurestore import FeatureStore
from featurestore.online.embedded import _free_port, find_server_binary
from tests.conftest import BASIC_DEFS, RepoFactory, events

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """Three primaries splitting the 16384 slots; the ports of the nodes."""
    import redis

    binary = find_server_binary()
    root = tmp_path_factory.mktemp("cluster")
    ports = [_free_port("127.0.0.1") for _ in range(3)]
    bus_ports = [_free_port("127.0.0.1") for _ in range(3)]  # port + 10000 may not exist
    procs = []
    try:
        for port, bus in zip(ports, bus_ports, strict=True):
            node = root / str(port)
            node.mkdir()
            (node / "node.conf").write_text(
                f"bind 127.0.0.1\nport {port}\ncluster-port {bus}\ncluster-enabled yes\ncluster-config-file nodes.conf\n"
                f'dir "{node}"\nsave ""\nappendonly no\nlogfile "node.log"\n'
            )
            procs.append(subprocess.Popen([binary, str(node / "node.conf")], cwd=node,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        clients = [redis.Redis(host="127.0.0.1", port=p) for p in ports]
        deadline = time.monotonic() + 15
        while True:
            try:
                for c in clients:
                    c.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        bounds = [0, 5461, 10923, 16384]
        for i, c in enumerate(clients):
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", bounds[i], bounds[i + 1] - 1)
        for p, bus in zip(ports[1:], bus_ports[1:], strict=True):
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", p, bus)
        deadline = time.monotonic() + 20
        while not all(c.cluster("info")["cluster_state"] == "ok" for c in clients):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not become ready")
            time.sleep(0.1)
        for c in clients:
            c.close()
        yield ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_materialize_read_push_and_remove_on_a_cluster(
    make_repo: RepoFactory, cluster: list[int], project_name: str
) -> None:
    from redis.cluster import RedisCluster
    from redis.crc import key_slot

    other = (
        "other = FeatureView('other', entities=[user], source=FileSource('data/events.parquet'), "
        "schema=[Field('value', Float64)], ttl=None)\n"
    )
    rows = [(u, NOW - timedelta(hours=1 + u % 3), None, float(u), f"l{u}") for u in range(3000)]
    repo = make_repo(
        {"defs.py": BASIC_DEFS.format(ttl="timedelta(days=1)") + other}, {"data/events.parquet": events(rows)},
        config=f"project: {project_name}\nonline_store:\n  url: redis://127.0.0.1:{cluster[1]}/0\n  cluster: true\n",
    )
    client = RedisCluster(host="127.0.0.1", port=cluster[0])
    try:
        with FeatureStore(repo) as store:
            store.apply()
            results = store.materialize(NOW - timedelta(days=1), NOW)
            assert [(r.view, r.rows, r.written) for r in results] == [("other", 3000, 3000), ("stats", 3000, 3000)]
            ids = [0, 1, 1499, 2999, 5000]
            resp = store.get_online_features(["stats:value", "stats:label"], [{"user_id": i} for i in ids])
            assert resp.to_dict()["value"] == [0.0, 1.0, 1499.0, 2999.0, None]
            assert resp.to_dict()["label"] == ["l0", "l1", "l1499", "l2999", None]
            # One entity's views share a slot (the hash tag), and the keys spread over all nodes.
            assert key_slot(f"{project_name}:stats:{{42}}".encode()) == key_slot(f"{project_name}:other:{{42}}".encode())
            per_node = [n.redis_connection.dbsize() for n in client.get_primaries()]
            assert sum(per_node) >= 6000 and all(count > 1000 for count in per_node)
            # Newest wins on the cluster too.
            store.push("stats", events([(7, NOW - timedelta(days=2), None, -1.0, "late")]))
            store.push("stats", events([(8, NOW, None, 88.0, "fresh")]))
            assert store.get_online_features(["stats:value"], [{"user_id": 7}, {"user_id": 8}]).to_dict()["value"] == [
                7.0, 88.0]
            # Removing a view scans every primary.
            (repo / "defs.py").write_text(
                "from featurestore import Entity, FeatureView, Field, FileSource, Float64\n"
                "user = Entity('user', join_keys=['user_id'])\n" + other
            )
            store.apply(allow_destructive=True)
            assert list(client.scan_iter(match=f"{project_name}:stats:*", count=1000)) == []
            assert len(list(client.scan_iter(match=f"{project_name}:other:*", count=1000))) == 3000
    finally:
        client.close()
