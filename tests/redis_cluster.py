"""A real Redis Cluster of the tests' own on loopback: three masters, a replica each.

The session shares one (fixture ``redis_cluster``); a test that kills nodes starts a private
one (fixture ``private_redis_cluster``). Nodes time out after a second, so a replica takes
over from a killed master within a few seconds. 6379 is never touched.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
import redis.cluster
from redis.cluster import key_slot

from servers._common import wait_for_port

NODE_TIMEOUT_MS = 1000
_BUS_OFFSET = 10000  # Redis's cluster bus listens on port + 10000


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """``count`` ports whose bus ports (port + 10000) are free too; ephemeral ports from
    the kernel would put the bus past 65535, so they are drawn from 20000-30000."""
    ports: list[int] = []
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    while len(ports) < count:
        port = rng.randrange(20000, 30000)
        if port in ports or port == 6379 or port + _BUS_OFFSET == 6379:
            continue
        if _is_free(port) and _is_free(port + _BUS_OFFSET):
            ports.append(port)
    return ports


class RedisClusterNodes:
    """Six redis-server processes in cluster mode, joined by ``redis-cli --cluster create``."""

    def __init__(self, workdir: Path, *, masters: int = 3) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.masters = masters
        self.ports = cluster_ports(masters * 2)
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        """One start-up node; redis-py's cluster client discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def start(self) -> RedisClusterNodes:
        for port in self.ports:
            self._start_node(port)
        for port in self.ports:
            wait_for_port("127.0.0.1", port, 15.0, proc=self.procs[port])
        create = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *self.nodes,
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if create.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout}{create.stderr}")
        self.wait_ok(30.0)
        self.wait_replicas_synced(30.0)
        return self

    def wait_replicas_synced(self, timeout_s: float) -> None:
        """Until every living replica's link to its master is up (a replica that has not
        synced once will not be promoted)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lagging = []
            for port in self.ports:
                if not self.alive(port):
                    continue
                info = self.node_client(port).info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    lagging.append(port)
            if not lagging:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas {lagging} not in sync after {timeout_s}s")
            time.sleep(0.1)

    def _start_node(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        log = open(node_dir / "redis.log", "ab")
        self.procs[port] = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(node_dir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                # A replica that never finished its first sync refuses to take over: sync at once.
                "--repl-diskless-sync-delay",
                "0",
                "--appendonly",
                "no",
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def node_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def client(self, **kwargs) -> redis.cluster.RedisCluster:
        port = next(p for p in self.ports if self.alive(p))
        return redis.cluster.RedisCluster(host="127.0.0.1", port=port, **kwargs)

    def alive(self, port: int) -> bool:
        proc = self.procs.get(port)
        return proc is not None and proc.poll() is None

    def cluster_nodes(self) -> list[dict]:
        """The live view of one living node: ``{port, id, master, master_id, slots, failed}``."""
        for port in self.ports:
            if not self.alive(port):
                continue
            try:
                text = self.node_client(port).execute_command("CLUSTER NODES")
            except redis.RedisError:
                continue
            if isinstance(text, bytes):
                text = text.decode()
            if isinstance(text, dict):  # some redis-py versions parse it
                return [
                    {
                        "port": int(addr.split(":")[1].split("@")[0]),
                        "id": info["node_id"],
                        "master": "master" in info["flags"],
                        "master_id": info.get("master_id", "-"),
                        "slots": info.get("slots", []),
                        "failed": "fail" in info["flags"],
                    }
                    for addr, info in text.items()
                ]
            rows = []
            for line in text.strip().splitlines():
                fields = line.split()
                rows.append(
                    {
                        "port": int(fields[1].split("@")[0].split(":")[1]),
                        "id": fields[0],
                        "master": "master" in fields[2],
                        "master_id": fields[3],
                        "slots": fields[8:],
                        "failed": "fail" in fields[2],
                    }
                )
            return rows
        raise RuntimeError("no cluster node answers CLUSTER NODES")

    def master_port_of(self, key: str) -> int:
        slot = key_slot(key.encode())
        for port in self.ports:
            if not self.alive(port):
                continue
            try:
                for start, end, *nodes in self.node_client(port).execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        return int(nodes[0][1])
            except redis.RedisError:
                continue
        raise RuntimeError(f"no node serves slot {slot}")

    def kill_master_of(self, key: str) -> int:
        """SIGKILL the master serving ``key``'s slot; returns its port."""
        port = self.master_port_of(key)
        self.procs[port].send_signal(signal.SIGKILL)
        self.procs[port].wait(timeout=10)
        return port

    def wait_ok(self, timeout_s: float) -> None:
        """Until every living node says cluster_state:ok and all 16384 slots are covered."""
        deadline = time.monotonic() + timeout_s
        while True:
            problems = self._problems()
            if not problems:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster not ok after {timeout_s}s: {problems}")
            time.sleep(0.1)

    def _problems(self) -> list[str]:
        problems = []
        for port in self.ports:
            if not self.alive(port):
                continue
            try:
                info = self.node_client(port).cluster("INFO")
            except redis.RedisError as exc:
                problems.append(f"{port}: {exc}")
                continue
            if info.get("cluster_state") != "ok":
                problems.append(f"{port}: state {info.get('cluster_state')}")
            if int(info.get("cluster_slots_ok", 0)) != 16384:
                problems.append(f"{port}: {info.get('cluster_slots_ok')} slots ok")
            try:
                slots = self.node_client(port).execute_command("CLUSTER SLOTS")
            except redis.RedisError as exc:
                problems.append(f"{port}: {exc}")
                continue
            # A killed master still serves its slots in the others' view until they mark it
            # failed and its replica is promoted.
            dead = {int(nodes[0][1]) for _, _, *nodes in slots} - {
                p for p in self.ports if self.alive(p)
            }
            if dead:
                problems.append(f"{port}: slots still on dead masters {sorted(dead)}")
        return problems

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
