"""Fuzz the INI loader (s3s3.config.load): only ConfigError may escape.

Each input is written to a file and loaded as the one configuration file, with no search
path and an empty environment, so that nothing outside the input is read. configparser is
instrumented as well: its branches are what leads the fuzzer to well-formed sections.

    python fuzz/fuzz_config.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import atheris  # noqa: E402
from _harness import expect, main  # noqa: E402

with atheris.instrument_imports(include=["s3s3", "configparser"]):
    from s3s3 import config
    from s3s3.errors import ConfigError

ALLOWED = (ConfigError,)
_DIR = tempfile.mkdtemp(prefix="s3s3-fuzz-config-")
atexit.register(shutil.rmtree, _DIR, True)
PATH = os.path.join(_DIR, "s3s3.ini")


def test_one_input(data: bytes) -> None:
    with open(PATH, "wb") as fh:
        fh.write(data)
    expect(data, ALLOWED, config.load, PATH, search_path=[], env={})


if __name__ == "__main__":
    main(test_one_input)
