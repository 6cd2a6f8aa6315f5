"""A Redis as a deployment should run one: ACL users per deployable, TLS only, durable.

`acl_lines` are the lines docs/operations.md's deployment section shows (a test keeps them equal): the
API's and the workers' users may each run only the commands they send, the commands inside the
Lua scripts they run included (Redis checks those too), on keys and channels under `corral:`.
The default user is off. A third user, `corral-test`, may do anything: only the tests' own
inspection connection, over a Unix socket on the Redis host, logs in as it.

The TLS material is made with `openssl` for each test run: a CA, the server's certificate for
its address, a client certificate (the server asks for one: tls-auth-clients yes), and a second
CA that signed nothing the server trusts, for the clients that must be refused.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from corral_testbed.hosts import Host

TLS_PORT = 6380
READY_TIMEOUT_S = 15.0

# What each deployable sends besides its scripts: AUTH (always allowed), CLIENT SETNAME (every
# connection names itself), PING (health checks), INFO (the durability check, when CONFIG is
# refused), EVALSHA and SCRIPT LOAD (redis-py loads a script the server does not know yet).
_CONNECTION = "+ping +client|setname +info +evalsha +script|load"
# The API: SUBMIT (its byte reserve: GET, INCRBY; the per-language lines: SMEMBERS, SADD),
# DEPTH and LIVE_WORKERS (scripts), HMGET and HGET (GET /jobs), LLEN in MULTI (the depth
# metrics), SUBSCRIBE (long polls wake on the finished
# channel); for API keys (corral_redis.apikeys) AUTHORIZE (the key's GCRA state: GET, SET), BOOK
# and UNBOOK (the owner's usage ledger: ZSET and HASH), the idempotency records (GET, SET, DEL);
# and `corral-api keys create|list|revoke`, run on the API host as this user (HSET in MULTI,
# HGETALL, DEL); SUBMIT's per-owner lines and turns (LPOS, LPUSH, LRANGE), and CANCEL (DECRBY,
# LREM, PEXPIRE, PUBLISH), ERASE (DEL, ZADD, ZREM: Judge0's delete); a job's event stream and input (XRANGE reads, SEND_INPUT: HEXISTS,
# XADD, XREVRANGE for a re-sent call) and the callbacks' line (scripts over its ZSET); CANCEL and
# `corral-api keys repair-bookings` measure what a job stored (HKEYS, HSTRLEN, XLEN; PTTL).
API_COMMANDS = (
    f"{_CONNECTION} +hmget +multi +exec +llen +subscribe +unsubscribe +smembers +sadd"
    " +exists +hget +hset +hdel +rpush +time +zrangebyscore +zremrangebyscore +zrange"
    " +get +set +del +incrby +hincrby +hgetall +zadd +zscore +zcount +zrem"
    " +lpos +lpush +lrange +decrby +lrem +pexpire +publish"
    " +hexists +xadd +xrange +xrevrange +hkeys +hstrlen +xlen +pttl"
)
# The worker: BLPOP on its languages' wake lists (waiting for work), SMEMBERS (the lines, when it
# takes any language), BLMOVE (a worker of the version before per-language lines), and START
# (LPOP of a wake token), RENEW, FINISH, RELEASE, RECOVER, HEARTBEAT,
# HOLD_DUTY (scripts); FINISH gives back the job's byte reserve (DECRBY) and settles its owner's
# usage booking (ZADD); SUBSCRIBE to the cancelled channel (stopping a cancelled job's jail). It
# never submits (EXISTS) or reads jobs (HMGET outside scripts is the same command). A running
# job's events (APPEND_EVENTS: XADD, XREVRANGE for a re-sent call) and an interactive job's
# input (XRANGE). FINISH measures what the job stored, for its booking (HKEYS, HSTRLEN, XLEN).
WORKER_COMMANDS = (
    f"{_CONNECTION} +blpop +blmove +lpop +smembers"
    " +time +lpos +hget +hmget +lmove +lrem +hincrby +hset +hdel +zadd +zscore +zrem"
    " +pexpire +publish +lpush +rpush +lrange +zrangebyscore +zremrangebyscore +zrange +decrby"
    " +llen +subscribe +unsubscribe"
    " +xadd +xrange +xrevrange +hkeys +hstrlen +xlen"
)
API_USER = "corral-api"
WORKER_USER = "corral-worker"
ADMIN_USER = "corral-test"


def acl_lines(api_password: str, worker_password: str) -> list[str]:
    """The ACL file of a Corral Redis (docs/operations.md, "Deployment"), with these passwords."""
    scope = "resetkeys ~corral:* resetchannels &corral:* -@all"
    return [
        "user default off",
        f"user {API_USER} on >{api_password} {scope} {API_COMMANDS}",
        f"user {WORKER_USER} on >{worker_password} {scope} {WORKER_COMMANDS}",
    ]


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.strip()}")


def _new_key_and_request(name: str, subject: str, cwd: Path) -> None:
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd,
    )  # fmt: skip


def _new_ca(name: str, cwd: Path) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=Corral test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=cwd,
    )  # fmt: skip


def _sign(name: str, ca: str, extensions: str, cwd: Path) -> None:
    (cwd / f"{name}.ext").write_text(extensions + "\n")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd,
    )  # fmt: skip


@dataclass(frozen=True)
class Tls:
    """Paths of the run's certificates and keys (PEM)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # A CA the server knows nothing of, and a client certificate it signed.
    stranger_ca: Path
    stranger_cert: Path
    stranger_key: Path

    @classmethod
    def make(cls, directory: Path, server_address: str) -> Tls:
        if shutil.which("openssl") is None:
            raise RuntimeError("openssl is not installed: apt-get install openssl")
        _new_ca("ca", directory)
        _new_ca("stranger-ca", directory)
        _new_key_and_request("redis", "/CN=redis", directory)
        _sign("redis", "ca", f"subjectAltName=IP:{server_address}\nextendedKeyUsage=serverAuth", directory)
        _new_key_and_request("client", "/CN=corral", directory)
        _sign("client", "ca", "extendedKeyUsage=clientAuth", directory)
        _new_key_and_request("stranger", "/CN=stranger", directory)
        _sign("stranger", "stranger-ca", "extendedKeyUsage=clientAuth", directory)
        for key in directory.glob("*.key"):
            key.chmod(0o600)
        return cls(
            ca=directory / "ca.crt",
            server_cert=directory / "redis.crt",
            server_key=directory / "redis.key",
            client_cert=directory / "client.crt",
            client_key=directory / "client.key",
            stranger_ca=directory / "stranger-ca.crt",
            stranger_cert=directory / "stranger.crt",
            stranger_key=directory / "stranger.key",
        )


class SecureRedis:
    """redis-server on `host`: TLS on its address only, the ACL users above, appendonly."""

    def __init__(self, host: Host, executable: str | None = None) -> None:
        self.host = host
        # Short: the Unix socket's path must fit in 108 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="corral-hb-redis-", dir="/tmp"))
        self.directory.chmod(0o700)
        self.executable = executable or shutil.which("redis-server") or "redis-server"
        self.tls = Tls.make(self.directory, host.address)
        self.api_password = secrets.token_urlsafe(24)
        self.worker_password = secrets.token_urlsafe(24)
        self.admin_password = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """rediss:// with no user: each deployable adds its own."""
        return f"rediss://{self.host.address}:{TLS_PORT}/0"

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def password_file(self, user: str) -> Path:
        """A 0600 file holding `user`'s password, for the password_file setting."""
        password = {API_USER: self.api_password, WORKER_USER: self.worker_password}[user]
        path = self.directory / f"{user}.password"
        path.write_text(password + "\n")
        path.chmod(0o600)
        return path

    def _config(self) -> str:
        tls = self.tls
        return "\n".join([
            "port 0",
            f"tls-port {TLS_PORT}",
            f"bind {self.host.address}",
            f"tls-cert-file {tls.server_cert}",
            f"tls-key-file {tls.server_key}",
            f"tls-ca-cert-file {tls.ca}",
            "tls-auth-clients yes",
            f"aclfile {self.directory / 'users.acl'}",
            f"unixsocket {self.socket_path}",
            "unixsocketperm 700",
            "appendonly yes",
            "appendfsync everysec",
            "maxmemory-policy noeviction",
            'save ""',
            f"dir {self.directory}",
            f"logfile {self.log_path}",
            "daemonize no",
        ]) + "\n"  # fmt: skip

    def start(self) -> None:
        users = [
            *acl_lines(self.api_password, self.worker_password),
            f"user {ADMIN_USER} on >{self.admin_password} ~* &* +@all",
        ]
        (self.directory / "users.acl").write_text("\n".join(users) + "\n")
        (self.directory / "redis.conf").write_text(self._config())
        self.process = subprocess.Popen(
            self.host.command([self.executable, str(self.directory / "redis.conf")]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with self.admin() as client:
                    client.ping()
                    return
            except (redis.ConnectionError, redis.ResponseError, FileNotFoundError):
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited ({self.process.returncode}):\n{self.log()}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server not ready after {READY_TIMEOUT_S}s:\n{self.log()}") from None
                time.sleep(0.02)

    def admin(self) -> redis.Redis:
        """The tests' own connection: any command, over the Unix socket (no network needed)."""
        return redis.Redis(
            unix_socket_path=str(self.socket_path), username=ADMIN_USER, password=self.admin_password, socket_timeout=5
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
