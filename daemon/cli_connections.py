"""`flow connections`: the SSH hosts in connections.toml, checked and trusted from the shell.

Offline commands: they read the configuration directly and connect themselves, so they work
before flowd runs and show the operator exactly what flowd's SSH executor would see.
"""

from __future__ import annotations

import time
from typing import Any

import click

from .cli import Ctx, Fail, cli, emit_json, print_table


@cli.group()
def connections() -> None:
    """SSH connections for remote tasks (connections.toml beside flowd.toml)."""


def _load(obj: Ctx) -> tuple[str, dict[str, Any]]:
    from flow.executors.ssh_config import ConnectionsError, load_connections

    path = obj.settings.connections_file
    try:
        return path, load_connections(path)
    except ConnectionsError as exc:
        raise Fail(str(exc)) from None


def _get(obj: Ctx, name: str) -> Any:
    path, conns = _load(obj)
    if name not in conns:
        known = ", ".join(sorted(conns)) or "none"
        raise Fail(f"no connection named {name!r} in {path} (known: {known})")
    return conns[name]


@connections.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def connections_list(obj: Ctx, as_json: bool) -> None:
    """Every connection, and whether its host key is known yet."""
    from flow.executors.ssh_hostkeys import known_keys

    path, conns = _load(obj)
    rows = [c.describe() | {"host_key_known": bool(known_keys(c))} for c in conns.values()]
    if as_json:
        emit_json({"file": path, "connections": rows})
        return
    if not rows:
        click.echo(f"no connections in {path}")
        return
    print_table([[r["name"], f"{r['user']}@{r['host']}:{r['port']}", r["key_file"] or "(default keys)",
                  r["jump_host"] or "", r["max_sessions"], "yes" if r["host_key_known"] else "NO"] for r in rows],
                ["NAME", "ADDRESS", "KEY FILE", "JUMP", "SESSIONS", "HOST KEY KNOWN"])


@connections.command("test")
@click.argument("name")
@click.pass_obj
def connections_test(obj: Ctx, name: str) -> None:
    """Connect as flowd would, run `true`, report the latency and the remote user."""
    from flow.executors.ssh_pool import Pool, SSHConnectError

    conn = _get(obj, name)
    pool = Pool(obj.settings.connections_file)
    try:
        t0 = time.perf_counter()
        pool.transport(conn)
        connected = time.perf_counter() - t0
        t1 = time.perf_counter()
        status, _ = pool.run(conn, "true", conn.connect_timeout)
        ran = time.perf_counter() - t1
        if status != 0:
            raise Fail(f"ssh {conn.name} ({conn.address}): `true` exited with status {status}")
        _, user = pool.run(conn, "id -un", conn.connect_timeout)
    except SSHConnectError as exc:
        raise Fail(str(exc)) from None
    finally:
        pool.close()
    click.echo(f"ok: {conn.name} ({conn.address}): connected in {connected * 1000:.0f} ms, "
               f"`true` ran in {ran * 1000:.0f} ms, remote user {user.strip()}")


@connections.command("trust")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Store the key without asking (only after checking it another way).")
@click.pass_obj
def connections_trust(obj: Ctx, name: str, yes: bool) -> None:
    """Fetch the host's key, show its fingerprint, and add it to flow's known-hosts file once confirmed."""
    from flow.executors import ssh_hostkeys
    from flow.executors.ssh_pool import Pool, SSHConnectError, classify, open_transport

    conn = _get(obj, name)
    pool = Pool(obj.settings.connections_file)
    transport = None
    try:
        sock = None
        if conn.jump_host:
            sock = pool.transport(pool.connection(conn.jump_host)).open_channel(
                "direct-tcpip", (conn.host, conn.port), ("127.0.0.1", 0), timeout=conn.connect_timeout)
        transport = open_transport(conn, sock, verify=False)
        key = transport.get_remote_server_key()
    except SSHConnectError as exc:
        raise Fail(str(exc)) from None
    except Exception as exc:
        raise Fail(str(classify(conn, exc))) from None
    finally:
        if transport is not None:
            transport.close()
        pool.close()
    shown = f"{key.get_name()} {ssh_hostkeys.fingerprint(key)}"
    try:
        ssh_hostkeys.verify(conn, key)
    except ssh_hostkeys.HostKeyChanged as exc:
        click.echo(f"WARNING: {exc}", err=True)
        raise Fail(f"not stored: remove the old key of {conn.known_hosts_name} first") from None
    except ssh_hostkeys.HostKeyRevoked as exc:
        raise Fail(f"not stored: {exc}") from None
    except ssh_hostkeys.HostKeyUnknown:
        pass
    else:
        click.echo(f"{conn.known_hosts_name} is already trusted ({shown})")
        return
    click.echo(f"host {conn.known_hosts_name} (connection {conn.name}) offers {shown}")
    if not yes:
        try:
            confirmed = click.confirm("Trust this key? (compare it with `ssh-keygen -lf` on the host)", default=False)
        except click.Abort:
            confirmed = False
        if not confirmed:
            raise Fail("not stored: the key was not confirmed (answer y, or pass --yes)")
    path = ssh_hostkeys.trust(conn, key)
    click.echo(f"stored in {path}")
