"""Named crash points for tests that must kill flowd at an exact moment.

`FLOW_FAULT=<name>` makes flowd die with SIGKILL's status when it reaches that point, as a
power cut or `kill -9` would at that instant. Read once at import; costs one comparison when unset.
"""

from __future__ import annotations

import os

_ARMED = os.environ.get("FLOW_FAULT", "")


def point(name: str) -> None:
    if _ARMED == name:
        os.kill(os.getpid(), 9)
