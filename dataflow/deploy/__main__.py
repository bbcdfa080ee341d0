"""Start a deployed data-flow process: `python -m dataflow.deploy ROLE`.

    master            migrate the metadata database once, then run the api-server (on
                      PORT), scheduler, dag-processor and triggerer under one supervisor
    worker            run a Celery worker
    airflow ARGS...   run an `airflow` command with the master's settings
                      (e.g. `python -m dataflow.deploy airflow users create ...` over cf ssh)
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from dataflow.deploy import environment, supervisor
from dataflow.errors import ConfigurationError

log = logging.getLogger('dataflow.deploy')


def airflow(*args: str) -> list[str]:
    return [os.path.join(os.path.dirname(sys.executable), 'airflow'), *args]


def run_master(env: dict[str, str]) -> int:
    log.info('migrating the metadata database')
    subprocess.run(airflow('db', 'migrate'), env=env, check=True)
    return supervisor.supervise({
        'api-server': airflow('api-server', '--host', '0.0.0.0', '--port', env['AIRFLOW__API__PORT'],
                              '--proxy-headers'),
        # The scheduler and triggerer run no tasks' logs worth serving here.
        'scheduler': airflow('scheduler', '--skip-serve-logs'),
        'dag-processor': airflow('dag-processor'),
        'triggerer': airflow('triggerer', '--skip-serve-logs'),
    }, env)


def run_worker(env: dict[str, str]) -> int:
    argv = airflow('celery', 'worker', '--celery-hostname', f'celery@{environment.hostname()}')
    if env.get('AIRFLOW__LOGGING__REMOTE_LOGGING', '').lower() == 'true':
        argv.append('--skip-serve-logs')  # logs go to S3; nothing to serve
    os.execvpe(argv[0], argv, env)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s %(message)s')
    if not argv or argv[0] not in ('master', 'worker', 'airflow'):
        print(__doc__, file=sys.stderr)
        return 2
    role = environment.WORKER if argv[0] == 'worker' else environment.MASTER
    try:
        env, warnings = environment.build(role)
    except ConfigurationError as exc:
        log.error('%s', exc)
        return 3
    for warning in warnings:
        log.warning('%s', warning)
    if argv[0] == 'master':
        return run_master(env)
    if argv[0] == 'worker':
        return run_worker(env)
    return subprocess.run(airflow(*argv[1:]), env=env).returncode


if __name__ == '__main__':
    sys.exit(main())
