"""A copy of this working tree, as a new user would have it after `git clone`."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def working_tree_copy(into):
    """The files git would commit now (uncommitted changes too), without .venv or .uv."""
    listed = subprocess.run(
        ['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
        cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout.decode().split('\0')
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a file deleted but not yet staged is still listed
            target = Path(into) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode & 0o777)
