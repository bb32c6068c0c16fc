"""A real Apache Kafka broker on localhost: KRaft, broker and controller in one JVM.

The broker's jars come from Maven Central through ``mvn`` (the pinned
``org.apache.kafka:kafka_2.13`` and its runtime dependencies), cached under
``~/.cache/driftrec/kafka-<version>``. Storage is formatted with the broker's own
``StorageTool`` and the broker runs as ``java ... kafka.Kafka server.properties``.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from driftrec.core import InfraError
from driftrec.ops.infra.process import ManagedProcess, parse_host_port, port_open, wait_until
from driftrec.ops.settings import Settings

__all__ = ["KafkaBroker", "jar_cache_dir"]

_MISSING_HINT = (
    "or point driftrec at an existing cluster with DRIFTREC_KAFKA_BOOTSTRAP=host:port "
    "(then `driftrec up` leaves Kafka alone)"
)


def jar_cache_dir(version: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "driftrec" / f"kafka-{version}" / "libs"


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise InfraError(
            f"`{tool}` is not installed: install {package} (Debian: apt-get install {package}), {_MISSING_HINT}"
        )
    return path


def _cluster_id() -> str:
    """A random cluster id as Kafka's own ``random-uuid`` makes it: never one that starts
    with "-", which the storage tool would read as an option (1 in 64 of them)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """Fetch, format, start, check and stop the local broker described by ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host, self.port = parse_host_port(settings.bootstrap_servers[0], 9092)
        self.controller_port = self.port + 1
        self.root = settings.data_dir.resolve() / "kafka"
        self.process = ManagedProcess(
            name="kafka",
            pid_file=self.root / "kafka.pid",
            log_file=settings.data_dir.resolve() / "logs" / "kafka.log",
            signature="kafka.Kafka",
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_local(self) -> bool:
        return (
            self.host in {"127.0.0.1", "localhost", "::1"}
            and len(self.settings.bootstrap_servers) == 1
        )

    # -- fetching ---------------------------------------------------------------------------

    def jars(self) -> Path:
        """The directory of broker jars, fetched through Maven on first use."""
        libs = jar_cache_dir(self.settings.kafka_version)
        if (libs / ".complete").exists():
            return libs
        mvn = _require("mvn", "maven")
        pom = resources.files("driftrec.ops.infra").joinpath("kafka-pom.xml")
        libs.mkdir(parents=True, exist_ok=True)
        with resources.as_file(pom) as pom_path:
            result = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(pom_path),
                    "dependency:copy-dependencies",
                    f"-Dkafka.version={self.settings.kafka_version}",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={libs}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            tail = (result.stdout + result.stderr).strip().splitlines()[-8:]
            raise InfraError(
                f"fetching Apache Kafka {self.settings.kafka_version} from Maven Central failed "
                f"(mvn exit {result.returncode}):\n  "
                + "\n  ".join(tail)
                + f"\nCheck that Maven can reach Maven Central, {_MISSING_HINT}"
            )
        (libs / ".complete").write_text(self.settings.kafka_version)
        return libs

    # -- configuration ----------------------------------------------------------------------

    def _write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.root / "data"),
            "num.partitions": str(self.settings.partitions),
            # One node: every internal topic has a single replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # Tests and the demo create consumer groups all the time; don't wait 3 s for each.
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        path = self.root / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = self.root / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.logger.kafka=INFO\n"
            "log4j.logger.org.apache.kafka=WARN\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        return path

    def _java_base(self, libs: Path) -> list[str]:
        java = _require("java", "openjdk-17-jre-headless")
        return [
            java,
            "-cp",
            str(libs / "*"),
            f"-Dlog4j.configuration=file:{self.root / 'log4j.properties'}",
        ]

    def _format(self, libs: Path, config: Path) -> None:
        if (self.root / "data" / "meta.properties").exists():
            return
        cluster_id = _cluster_id()
        result = subprocess.run(
            [
                *self._java_base(libs),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise InfraError(
                f"formatting Kafka storage in {self.root / 'data'} failed:\n{result.stdout}{result.stderr}"
            )

    # -- lifecycle ----------------------------------------------------------------------------

    def healthy(self) -> bool:
        """The broker answers a metadata request (an open port alone is not enough)."""
        if not port_open(self.host, self.port):
            return False
        from kafka import KafkaAdminClient  # deferred: costly import, needed only here
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=[self.address],
                request_timeout_ms=3000,
                api_version_auto_timeout_ms=3000,
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker unless ours already runs; returns what happened."""
        if self.process.alive():
            if wait_until(self.healthy, timeout):
                return "already running"
            raise InfraError(
                f"Kafka (pid {self.process.pid()}) runs but does not answer on {self.address}; see {self.process.log_file}"
            )
        for port in (self.port, self.controller_port):
            if port_open(self.host, port):
                raise InfraError(
                    f"port {self.host}:{port} is taken by another program, so driftrec cannot start Kafka there. "
                    f"Stop that program, set DRIFTREC_KAFKA_BOOTSTRAP to another free host:port, "
                    f"or, if it is a Kafka cluster you want to use, set DRIFTREC_KAFKA_BOOTSTRAP to it."
                )
        libs = self.jars()
        config = self._write_config()
        self._format(libs, config)
        heap = self.settings.kafka_heap
        self.process.start(
            [
                *self._java_base(libs),
                f"-Xmx{heap}",
                "-Xms128m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                "kafka.Kafka",
                str(config),
            ],
            cwd=self.root,
        )
        self.process.await_healthy(self.healthy, timeout, f"Kafka on {self.address}")
        return "started"

    def stop(self) -> bool:
        return self.process.stop()
