"""flowtui tests drive the app with Pilot against the same real flowd the daemon tests use."""

from tests.daemon.conftest import Flowd, flowd, make_flowd  # noqa: F401
from tests.tui.snapshots import frozen, snapshot_flowd  # noqa: F401
from tests.tui.test_tmux import tmux  # noqa: F401
