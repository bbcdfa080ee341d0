"""bin/setup on a machine with nothing but the distribution's Python 3.11 (no pip, no venv
module, an EXTERNALLY-MANAGED interpreter): a copy of this working tree, a fresh HOME,
PATH=/usr/bin:/bin and a fresh uv cache, so nothing of this machine's own setup can help.

The uv cache is the test's own too (a cold run takes seconds here, 8-12 s, against 3-4 s
sharing the user's cache), so it proves the packages come from uv.lock's registry URLs.
"""
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.checkout import working_tree_copy

DISTRIBUTION_PYTHON = Path('/usr/bin/python3.11')
# What a machine behind a proxy or a TLS-intercepting gateway needs to reach the registry.
PASSED_THROUGH = ('HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY',
                  'http_proxy', 'https_proxy', 'no_proxy', 'all_proxy',
                  'SSL_CERT_FILE', 'SSL_CERT_DIR', 'REQUESTS_CA_BUNDLE')


def run(command, cwd, env, timeout):
    result = subprocess.run(command, cwd=cwd, env=env, timeout=timeout,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, f'{command} failed ({result.returncode}):\n{result.stdout}'
    return result.stdout


@pytest.mark.skipif(not DISTRIBUTION_PYTHON.exists(),
                    reason=f'needs the distribution Python at {DISTRIBUTION_PYTHON}')
@pytest.mark.fresh_checkout
@pytest.mark.timeout(1800)
def test_setup_needs_only_the_distribution_python():
    with tempfile.TemporaryDirectory(prefix='dataflow-test-setup-') as scratch:
        scratch = Path(scratch)
        checkout, home = scratch / 'data-flow', scratch / 'home'
        home.mkdir()
        working_tree_copy(checkout)
        env = {'HOME': str(home), 'PATH': '/usr/bin:/bin', 'LANG': 'C.UTF-8',
               'UV_CACHE_DIR': str(scratch / 'uv-cache'),
               **{name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}}

        run(['bin/setup'], checkout, env, timeout=1500)

        venv_python = str(checkout / '.venv' / 'bin' / 'python')
        facts = json.loads(run(
            [venv_python, '-c', 'import json, sys; print(json.dumps({'
             '"version": sys.version_info[:2], "prefix": sys.prefix, '
             '"base_prefix": sys.base_prefix, "base_executable": sys._base_executable}))'],
            checkout, env, timeout=60))
        assert facts['version'] == [3, 11]
        assert facts['prefix'] == str(checkout / '.venv')
        assert facts['base_prefix'] == '/usr'
        assert facts['base_executable'].startswith('/usr/bin/python3')
        run([venv_python, '-c', 'import dataflow, airflow'], checkout, env, timeout=300)

        uv = checkout / '.uv' / 'bin' / 'uv'
        installed = uv.stat().st_mtime_ns
        output = run(['bin/setup'], checkout, env, timeout=300)
        assert uv.stat().st_mtime_ns == installed, 'the second bin/setup installed uv again'
        assert 'installing uv' not in output
