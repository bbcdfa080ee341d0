"""Puts the uv that uv.lock locks into .uv/bin/uv, with nothing but Python's standard library.

bin/setup runs this with the machine's own Python (no pip, no venv module needed, nothing
installed outside the checkout). uv.lock names uv's version (a dev dependency) and, for
every platform, its wheel's URL and sha256: this picks the wheel for this machine,
downloads it (urllib: HTTPS_PROXY/NO_PROXY and SSL_CERT_FILE apply), checks the sha256 and
extracts the uv binary. Nothing is downloaded when .uv/bin/uv already is that version.

Runs on any Python 3.6+, so no tomllib: the little it needs from uv.lock is read with a regex.
"""
import glob
import hashlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import zipfile
from urllib.request import urlopen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UV_DIR = os.path.join(ROOT, '.uv')
UV_BIN = os.path.join(UV_DIR, 'bin', 'uv')
LOCK = os.path.join(ROOT, 'uv.lock')


def fail(message):
    sys.exit('bin/install-uv.py: ' + message)


def locked_uv():
    """uv's version and its wheels [(filename, url, sha256)] as uv.lock has them."""
    with open(LOCK, encoding='utf-8') as f:
        lock = f.read()
    package = re.search(r'^\[\[package\]\]\nname = "uv"\nversion = "([^"]+)"\n(.*?)(?=^\[\[|\Z)',
                        lock, re.M | re.S)
    if not package:
        fail('uv.lock has no [[package]] "uv" (uv must stay a dev dependency there)')
    version, body = package.groups()
    wheels = re.findall(r'\{ url = "([^"]+/([^"/]+\.whl))", hash = "sha256:([0-9a-f]{64})"', body)
    if not wheels:
        fail('uv.lock lists no wheels for uv ' + version)
    return version, [(name, url, sha256) for url, name, sha256 in wheels]


def installed_version():
    try:
        out = subprocess.check_output([UV_BIN, '--version'], stderr=subprocess.DEVNULL,
                                      universal_newlines=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    words = out.split()
    return words[1] if len(words) >= 2 and words[0] == 'uv' else None


def musl_version():
    """(major, minor) of the musl C library, or None when this is not a musl system."""
    for loader in glob.glob('/lib/ld-musl-*.so.1'):
        # The loader prints "musl libc (x86_64)\nVersion 1.2.4\n..." on stderr when run bare.
        proc = subprocess.Popen([loader], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True)
        match = re.search(r'Version (\d+)\.(\d+)', proc.communicate()[1])
        return (int(match.group(1)), int(match.group(2))) if match else (1, 1)
    return None


def platform_tags():
    """This machine's wheel platform tags that uv's binary can use, best first."""
    system = platform.system()
    machine = platform.machine().lower()
    if system == 'Linux':
        arch = {'amd64': 'x86_64', 'arm64': 'aarch64'}.get(machine, machine)
        try:
            glibc = os.confstr('CS_GNU_LIBC_VERSION')  # "glibc 2.36"; unset on musl
        except (AttributeError, ValueError, OSError):
            glibc = None
        match = re.match(r'glibc (\d+)\.(\d+)', glibc or '')
        if match:
            major, minor = int(match.group(1)), int(match.group(2))
            tags = ['manylinux_%d_%d_%s' % (major, m, arch) for m in range(minor, -1, -1)]
            if (major, minor) >= (2, 17):
                tags.append('manylinux2014_' + arch)
        else:
            musl = musl_version()
            if not musl:
                fail('neither glibc nor musl found on this Linux machine: no uv wheel for it')
            tags = ['musllinux_%d_%d_%s' % (musl[0], m, arch) for m in range(musl[1], -1, -1)]
        return tags + ['linux_' + arch]
    if system == 'Darwin':
        arch = 'arm64' if machine in ('arm64', 'aarch64') else machine
        release = [int(part) for part in (platform.mac_ver()[0] or '10.12').split('.')[:2]]
        major, minor = release[0], (release[1] if len(release) > 1 else 0)
        tags = []
        for major_version in range(major, 10, -1):  # macOS 11 and later: x_0 only
            tags.append('macosx_%d_0_%s' % (major_version, arch))
        for minor_version in range(minor if major == 10 else 16, -1, -1):
            tags.append('macosx_10_%d_%s' % (minor_version, arch))
        return tags
    fail('no uv wheel for %s %s in uv.lock; bin/setup supports Linux and macOS' % (system, machine))


def pick_wheel(version, wheels):
    tags = platform_tags()
    best = None
    for name, url, sha256 in wheels:
        # uv-0.13.8-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
        wheel_tags = name[:-len('.whl')].split('-')[-1].split('.')
        rank = min((tags.index(tag) for tag in wheel_tags if tag in tags), default=None)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, url, sha256)
    if best is None:
        fail('uv.lock has no uv %s wheel for this machine (%s %s, which takes %s)'
             % (version, platform.system(), platform.machine(),
                tags[0] if len(tags) == 1 else '%s ... %s' % (tags[0], tags[-1])))
    return best[1], best[2]


def download(url, sha256, into):
    """Downloads url into the directory `into`, checks its sha256; returns the file's path."""
    fd, path = tempfile.mkstemp(prefix='uv-', suffix='.whl', dir=into)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, 'wb') as out:
            response = urlopen(url, timeout=60)
            try:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
            finally:
                response.close()
    except BaseException as error:  # Ctrl-C too: leave no partial wheel behind
        os.unlink(path)
        if isinstance(error, Exception):
            fail('could not download %s: %s' % (url, error))
        raise
    if digest.hexdigest() != sha256:
        os.unlink(path)
        fail('sha256 mismatch for %s: uv.lock has %s, the download is %s'
             % (url, sha256, digest.hexdigest()))
    return path


def extract_uv(wheel, version):
    """Writes the wheel's uv binary to UV_BIN atomically (bin/setup may run twice at once)."""
    member = 'uv-%s.data/scripts/uv' % version
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(member)
        except KeyError:
            fail('%s is not in the uv wheel' % member)
    fd, path = tempfile.mkstemp(prefix='uv-', dir=os.path.dirname(UV_BIN))
    with os.fdopen(fd, 'wb') as out:
        out.write(data)
    os.chmod(path, 0o755)
    os.replace(path, UV_BIN)


def main():
    version, wheels = locked_uv()
    if installed_version() == version:
        return
    url, sha256 = pick_wheel(version, wheels)
    os.makedirs(os.path.dirname(UV_BIN), exist_ok=True)
    sys.stderr.write('bin/setup: installing uv %s into .uv/bin from %s\n' % (version, url))
    wheel = download(url, sha256, UV_DIR)
    try:
        extract_uv(wheel, version)
    finally:
        os.unlink(wheel)
    if installed_version() != version:
        fail('%s does not report uv %s after installing it' % (UV_BIN, version))


if __name__ == '__main__':
    main()
