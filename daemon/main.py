"""`flowd`: the daemon. Its issue (socket protocol, systemd integration, supervision) is next."""

import sys


def main() -> None:
    print("flowd is not built yet: run DAGs with `flow dags test DAG` for now (see README.md)", file=sys.stderr)
    sys.exit(1)
