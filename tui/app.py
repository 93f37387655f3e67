"""`flowtui`: the console. Its issue builds on flowd's protocol, which comes first."""

import sys


def main() -> None:
    print("flowtui is not built yet: it needs flowd, which comes first (see README.md)", file=sys.stderr)
    sys.exit(1)
