"""A real S3-compatible server for tests: a single-node Ceph cluster with a RADOS Gateway on loopback.

`start_s3_server(workdir)` bootstraps one monitor, one memstore OSD and one radosgw (Debian packages
`ceph-mon ceph-osd radosgw`) as child processes of the test session. Everything lives under `workdir`
(own fsid, conf file, cluster name, ports, run dir, admin sockets, pid and log files): nothing reads or
writes /etc/ceph or /var/lib/ceph, and several sessions can run side by side. Authentication inside the
cluster is off, but radosgw itself is a strict S3 endpoint: it checks SigV4 signatures and presigned-URL
expiry. The daemons run as the calling user (root included: they are not told to drop privileges).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from tests.support.ports import free_port, wait_until

START_TIMEOUT = 90.0
CLUSTER = "s3test"
RGW_NAME = "client.rgw.s3"
LOG_NAMES = {"mon": "mon.a", "osd": "osd.0", "rgw": RGW_NAME, "admin": "client.admin"}  # -> Ceph entity
# The logs worth showing when a step fails, most relevant first ("admin" is the ceph/radosgw-admin CLIs).
MON_LOGS, OSD_LOGS = ("mon", "admin"), ("osd", "mon")
ADMIN_LOGS, RGW_LOGS = ("admin", "osd", "mon"), ("rgw", "osd", "mon")
INSTALL_HINT = "apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw (.ci/run does this)"
BINARIES = ("ceph-mon", "ceph-osd", "monmaptool", "ceph", "radosgw", "radosgw-admin")

CONF = """\
[global]
fsid = {fsid}
mon_host = [v2:127.0.0.1:{mon_port}]
mon_initial_members = a
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_client_mode = crc
ms_service_mode = crc
ms_mon_service_mode = crc
ms_cluster_mode = crc
run_dir = {dir}/run
admin_socket = {dir}/run/$cluster-$name.$pid.asok
pid_file = {dir}/run/$cluster-$name.pid
crash_dir = {dir}/crash
keyring = {dir}/keyring
log_file = {dir}/log/$cluster-$name.log
mon_cluster_log_file = default={dir}/log/$cluster.$channel.log cluster={dir}/log/$cluster.log
log_to_stderr = false
err_to_stderr = true
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_crit = 0
mon_data_avail_warn = 0
paxos_propose_interval = 0.01
paxos_min_wait = 0.01

[mon]
mon_data = {dir}/mon/$cluster-$id

[osd]
osd_data = {dir}/osd/$cluster-$id
osd_objectstore = memstore
memstore_device_bytes = 4294967296

[{rgw_name}]
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw_data = {dir}/rgw
rgw_init_timeout = 60
rgw_thread_pool_size = 32
rgw_enable_lc_threads = false
rgw_enable_quota_threads = false
rgw_enable_usage_log = false
rgw_run_sync_thread = false
rgw_dynamic_resharding = false
"""


class S3ServerError(RuntimeError):
    """The Ceph cluster or its radosgw failed; the message ends with the tail of the relevant logs."""


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last {len(text)} lines of {path} ---\n" + "\n".join(text)


def _clean_env() -> dict[str, str]:
    """The environment for Ceph tools, without variables that point them at another cluster or Python."""
    drop = ("CEPH_", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    return {key: value for key, value in os.environ.items() if not key.startswith(drop)}


@dataclass
class S3Server:
    """A single-node Ceph cluster serving S3 at `endpoint`; `stop()` ends every daemon it started."""

    endpoint: str
    access_key: str
    secret_key: str
    workdir: Path
    region: str = "us-east-1"
    _daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def conf(self) -> Path:
        return self.workdir / "ceph.conf"

    def client(self, *, secret_key: str | None = None, config: Config | None = None) -> BaseClient:
        """A boto3 S3 client (path-style, SigV4, checksums only when required); `config` is merged in."""
        base = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret_key is None else secret_key,
            region_name=self.region,
            config=base if config is None else base.merge(config),
        )

    def start_rgw(self, timeout: float = START_TIMEOUT) -> None:
        """Start radosgw (again) on the same port; return once it serves authenticated S3 requests."""
        if self._alive("rgw"):
            return
        if not (self._alive("mon") and self._alive("osd")):
            raise S3ServerError("the Ceph monitor and OSD are not running (stop() was called or they died)")
        self._spawn("rgw", ["radosgw", "-n", RGW_NAME])
        probe = self.client(config=Config(retries={"total_max_attempts": 1}, connect_timeout=2))
        self._wait(lambda: bool(probe.list_buckets()), timeout, f"radosgw S3 at {self.endpoint}", RGW_LOGS)

    def stop_rgw(self) -> None:
        """Stop only radosgw: S3 requests fail until `start_rgw()`; the monitor and OSD keep the data."""
        self._terminate("rgw")

    def stop(self) -> None:
        """Stop every daemon this server started (radosgw, OSD, monitor) and wait for them to exit."""
        for key in ("rgw", "osd", "mon"):
            self._terminate(key)
        atexit.unregister(self.stop)

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each running daemon, from /proc."""
        sizes = {}
        for key, process in self._daemons.items():
            status = Path(f"/proc/{process.pid}/status").read_text()
            kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
            sizes[key] = int(kib) * 1024
        return sizes

    # -- processes -----------------------------------------------------------------------------------

    def _ceph_args(self) -> list[str]:
        return ["--cluster", CLUSTER, "-c", str(self.conf)]

    def _tails(self, keys: Iterable[str]) -> str:
        """The ends of the (non-empty) stderr and log files of the given daemons / tools."""
        log = self.workdir / "log"
        paths = [
            path for key in keys for path in (log / f"{key}.stderr", log / f"{CLUSTER}-{LOG_NAMES[key]}.log")
        ]
        return "\n".join(_tail(path) for path in paths if path.is_file() and path.stat().st_size)

    def _alive(self, key: str) -> bool:
        process = self._daemons.get(key)
        return process is not None and process.poll() is None

    def _spawn(self, key: str, argv: Sequence[str]) -> None:
        """Start a daemon in the foreground as our child; what it prints goes to log/KEY.stderr."""
        with open(self.workdir / "log" / f"{key}.stderr", "ab") as output:
            self._daemons[key] = subprocess.Popen(
                [*argv, *self._ceph_args(), "-f"], stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                env=_clean_env(),
            )  # fmt: skip

    def _terminate(self, key: str, grace: float = 10.0) -> None:
        process = self._daemons.pop(key, None)
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _check_daemons(self, what: str) -> None:
        """Raise if a daemon we started has exited (a crash shows at once instead of as a timeout)."""
        for key, process in self._daemons.items():
            if process.poll() is not None:
                raise S3ServerError(
                    f"{what}: ceph {key} daemon exited with status {process.returncode}\n{self._tails([key])}"
                )

    def _wait(self, check: Callable[[], bool], timeout: float, what: str, logs: Sequence[str]) -> None:
        """`wait_until(check)`, failing early if a daemon dies; errors carry the daemons' log tails."""
        daemons = list(self._daemons.values())
        last_error: list[Exception] = []

        def done() -> bool:
            if any(process.poll() is not None for process in daemons):
                return True
            try:
                return check()
            except Exception as exc:
                last_error[:] = [exc]
                raise

        try:
            wait_until(done, timeout, what, 0.1)
        except TimeoutError as exc:
            last = f" (last error: {last_error[0]!r})" if last_error else ""
            raise S3ServerError(f"{exc}{last}\n{self._tails(logs)}") from None
        self._check_daemons(what)

    def _run(self, argv: Sequence[str], timeout: float, logs: Sequence[str]) -> str:
        """Run a Ceph tool against this cluster, watching the daemons meanwhile; return its stdout."""
        what = " ".join(argv)
        process = subprocess.Popen(
            [*argv, *self._ceph_args()], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=_clean_env(),
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    stdout, stderr = process.communicate(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    self._check_daemons(what)
                    if time.monotonic() > deadline:
                        raise S3ServerError(
                            f"{what} did not finish within {timeout:.0f} s\n{self._tails(logs)}"
                        ) from None
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        if process.returncode != 0:
            raise S3ServerError(
                f"{what} exited with status {process.returncode}:\n{stderr.strip()}\n{self._tails(logs)}"
            )
        return stdout

    def _bootstrap(self, rgw_port: int, deadline: float) -> None:
        """Monitor, then one memstore OSD, then the S3 user, then radosgw; each step waits for the last."""

        def left() -> float:
            return deadline - time.monotonic()

        fsid, osd_uuid, mon_port = str(uuid.uuid4()), str(uuid.uuid4()), free_port()
        for sub in ("run", "log", "crash", "mon", f"osd/{CLUSTER}-0", "rgw"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            CONF.format(dir=self.workdir, fsid=fsid, mon_port=mon_port, rgw_port=rgw_port, rgw_name=RGW_NAME)
        )
        monmap = self.workdir / "monmap"
        mon_addr = f"[v2:127.0.0.1:{mon_port}]"
        self._run(
            ["monmaptool", "--create", "--fsid", fsid, "--addv", "a", mon_addr, str(monmap)], left(), MON_LOGS
        )
        self._run(["ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap)], left(), MON_LOGS)
        self._spawn("mon", ["ceph-mon", "-i", "a"])

        connect = str(max(1, int(left())))
        osd_id = self._run(
            ["ceph", "--connect-timeout", connect, "osd", "new", osd_uuid], left(), MON_LOGS
        ).strip()
        if osd_id != "0":
            raise S3ServerError(f"ceph osd new returned {osd_id!r} instead of 0")
        self._run(["ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], left(), OSD_LOGS)
        self._spawn("osd", ["ceph-osd", "-i", "0"])

        # radosgw-admin creates the default zone and its pools (waiting for the OSD) before radosgw starts,
        # so the two never race to initialise the zone.
        self._run(
            ["radosgw-admin", "user", "create", "--uid", "tester", "--display-name", "tester",
             "--access-key", self.access_key, "--secret-key", self.secret_key],
            left(),
            ADMIN_LOGS,
        )  # fmt: skip
        self.start_rgw(left())


def start_s3_server(workdir: Path, timeout: float = START_TIMEOUT) -> S3Server:
    """Bootstrap a Ceph monitor, a memstore OSD and radosgw under `workdir`; return once S3 answers.

    Raises FileNotFoundError if the Ceph packages are missing, S3ServerError (with log tails) if the
    cluster does not come up within `timeout` seconds; daemons already started are stopped then.
    """
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not installed; install with: {INSTALL_HINT}")
    rgw_port = free_port()
    server = S3Server(
        endpoint=f"http://127.0.0.1:{rgw_port}",
        access_key="TEST" + secrets.token_hex(8).upper(),
        secret_key=secrets.token_hex(20),  # hex: a leading "-" would read as an option
        workdir=workdir.resolve(),
    )
    atexit.register(server.stop)  # no orphaned daemons if the caller forgets stop() or fails first
    try:
        server._bootstrap(rgw_port, time.monotonic() + timeout)
    except BaseException:
        server.stop()
        raise
    return server
