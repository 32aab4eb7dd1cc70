"""The core must stay free of I/O: importing it pulls in neither trio, httpx nor socket."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_io_libraries() -> None:
    code = (
        "import sys\n"
        "import bridge.core.parser, bridge.core.session, bridge.core.rest_codec, bridge.core.resp\n"
        "import bridge.core.commands, bridge.core.local\n"
        "bad = [m for m in ('trio', 'httpx', 'socket', 'anyio', 'httpcore') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
