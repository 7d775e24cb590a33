"""Atomic writes keep the mode a plain open() would give (0666 minus the umask), not mkstemp's 0600."""

import os
import subprocess
import sys


def test_written_files_follow_the_umask(tmp_path):
    script = ("import os, sys; os.umask(int(sys.argv[2], 8)); from pixelwise.core.io import atomic_write_text; "
              "atomic_write_text(sys.argv[1], 'x')")
    for umask, mode in (("022", 0o644), ("077", 0o600), ("002", 0o664)):
        path = tmp_path / f"f{umask}.txt"
        subprocess.run([sys.executable, "-c", script, str(path), umask], check=True)
        assert os.stat(path).st_mode & 0o777 == mode, umask
