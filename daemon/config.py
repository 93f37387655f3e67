"""Settings shared by flowd and every `flow` command.

Precedence, lowest first: built-in defaults, the TOML file, `FLOW_*` environment variables,
command-line flags. Each value remembers where it came from, so `--print-config` can say why
a setting has the value it has.

The defaults depend on the mode. "user" (a person running flowd for themselves) keeps
everything under the XDG folders in their home. "system" (flowd under systemd as a service)
uses the FHS locations, or the folders systemd made for the unit and named in
$CONFIGURATION_DIRECTORY, $STATE_DIRECTORY, $LOGS_DIRECTORY and $RUNTIME_DIRECTORY.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from flow import paths
from flow.paths import user_config_dir, user_data_dir, user_socket_path
from flow.units import parse_size, parse_threshold


class ConfigError(ValueError):
    """A setting has a value flow cannot use; the message names the setting and its source."""


def system_timezone() -> str:
    """The host's IANA zone name, so a DAG without a zone runs on the clock its owner reads."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and "/" in tz or tz == "UTC":
        return tz
    try:
        return Path("/etc/timezone").read_text().strip() or "UTC"
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"


@dataclass
class Settings:
    dags_folder: str = ""
    db_url: str = ""
    log_folder: str = ""
    parallelism: int = 32
    default_timezone: str = ""
    paused_at_creation: bool = False
    parse_timeout: float = 30.0
    parse_processes: int = 2
    """DAG files parsed at once, each in its own child process, beside the scheduler."""
    parse_memory_limit: str = "4GiB"
    """Address space a parse child may use ("4GiB"; empty: no limit); over it, the file's import
    fails with MemoryError instead of pressing the host's memory."""
    kill_grace: float = 5.0
    executor: str = "local"
    socket_path: str = ""
    operator_group: str = "flow"
    viewer_group: str = "flow-view"
    stop_mode: str = "adopt"
    log_level: str = "info"
    log_retention_days: int = 30
    callback_timeout: float = 300.0
    max_log_bytes_per_try: int = 100 * 1024 * 1024
    sample_interval: float = 2.0
    """Seconds between two samples of every running task's process tree (CPU, memory, I/O)."""
    min_free_memory: str = ""
    """Admission control: start no new task while the host's available memory is below this
    ("10%" of the total, or a size such as "2GiB"); empty turns it off."""
    connections_file: str = ""
    """SSH connections (connections.toml); by default beside the configuration file."""
    max_pending_connections: int = 64
    """Socket connections that have not said hello yet, from all users together."""
    max_pending_per_user: int = 16
    max_connections: int = 256
    """Socket connections past the hello, from all users together."""
    max_connections_per_user: int = 64
    connection_reserve: int = 16
    """Room above both totals kept for root and flowd's own user, so `flow status` by root answers."""
    hello_timeout: float = 5.0
    """Seconds a new connection has to send its hello."""
    max_client_buffer: int = 8 * 1024 * 1024
    """Bytes of unread replies and events one connection may hold in flowd before it is cut off."""
    metrics_listen: str = ""
    """Prometheus endpoint: "127.0.0.1:9464" or "unix:/run/flowd/metrics.sock"; empty: off."""
    metrics_textfile: str = ""
    """node_exporter textfile (e.g. /var/lib/node_exporter/textfile/flowd.prom); empty: off."""
    metrics_textfile_interval: float = 15.0
    create_cron_data_intervals: bool = False
    """Airflow 2's reading of cron schedules for the DAG folder: a run's logical date (``ds``) is the
    start of the interval it covers, not its fire time. Off by default, as in Airflow 3; a DAG can
    choose for itself with DAG(create_cron_data_intervals=...) or an Airflow timetable."""
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    notifiers: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """[notifiers.NAME] tables, validated (daemon/notifyconf.py); never printed with their secrets."""

    ENV = {
        "dags_folder": "FLOW_DAGS_FOLDER",
        "db_url": "FLOW_DB_URL",
        "log_folder": "FLOW_LOG_FOLDER",
        "parallelism": "FLOW_PARALLELISM",
        "default_timezone": "FLOW_DEFAULT_TIMEZONE",
        "paused_at_creation": "FLOW_PAUSED_AT_CREATION",
        "parse_timeout": "FLOW_PARSE_TIMEOUT",
        "parse_processes": "FLOW_PARSE_PROCESSES",
        "parse_memory_limit": "FLOW_PARSE_MEMORY_LIMIT",
        "kill_grace": "FLOW_KILL_GRACE",
        "executor": "FLOW_EXECUTOR",
        "socket_path": "FLOW_SOCKET",
        "operator_group": "FLOW_OPERATOR_GROUP",
        "viewer_group": "FLOW_VIEWER_GROUP",
        "stop_mode": "FLOW_STOP_MODE",
        "log_level": "FLOW_LOG_LEVEL",
        "log_retention_days": "FLOW_LOG_RETENTION_DAYS",
        "callback_timeout": "FLOW_CALLBACK_TIMEOUT",
        "max_log_bytes_per_try": "FLOW_MAX_LOG_BYTES_PER_TRY",
        "sample_interval": "FLOW_SAMPLE_INTERVAL",
        "min_free_memory": "FLOW_MIN_FREE_MEMORY",
        "connections_file": "FLOW_CONNECTIONS",
        "max_pending_connections": "FLOW_MAX_PENDING_CONNECTIONS",
        "max_pending_per_user": "FLOW_MAX_PENDING_PER_USER",
        "max_connections": "FLOW_MAX_CONNECTIONS",
        "max_connections_per_user": "FLOW_MAX_CONNECTIONS_PER_USER",
        "connection_reserve": "FLOW_CONNECTION_RESERVE",
        "hello_timeout": "FLOW_HELLO_TIMEOUT",
        "max_client_buffer": "FLOW_MAX_CLIENT_BUFFER",
        "metrics_listen": "FLOW_METRICS_LISTEN",
        "metrics_textfile": "FLOW_METRICS_TEXTFILE",
        "metrics_textfile_interval": "FLOW_METRICS_TEXTFILE_INTERVAL",
        "create_cron_data_intervals": "FLOW_CREATE_CRON_DATA_INTERVALS",
    }

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("sources", "notifiers")}


MODES = ("user", "system")
ZERO_MEANS_OFF = ("log_retention_days", "max_log_bytes_per_try")
"""Integer settings where 0 turns the limit off (keep logs forever, never cut a try's log)."""
LOG_LEVELS = ("debug", "info", "warning", "error")


def default_mode() -> str:
    """root runs the system service; anyone else runs their own flowd."""
    return "system" if os.geteuid() == 0 else "user"


def _systemd_dir(var: str, fallback: str) -> Path:
    """A folder systemd created for the unit (the first, if the variable lists several)."""
    value = os.environ.get(var, "").split(":")[0]
    return Path(value) if value else Path(fallback)


def default_socket_path() -> str:
    """systemd's RuntimeDirectory, else /run/flowd for root, else the user's runtime dir (XDG)."""
    if os.geteuid() == 0 and not os.environ.get("RUNTIME_DIRECTORY"):
        return paths.system_socket_path()
    return user_socket_path()


def _defaults(mode: str | None) -> dict[str, Any]:
    if mode == "system":
        return {
            "dags_folder": str(_systemd_dir("CONFIGURATION_DIRECTORY", paths.SYSTEM_CONFIG_DIR) / "dags"),
            "db_url": f"sqlite:///{_systemd_dir('STATE_DIRECTORY', paths.SYSTEM_STATE_DIR) / 'flow.db'}",
            "log_folder": str(_systemd_dir("LOGS_DIRECTORY", paths.SYSTEM_LOGS_DIR)),
            "default_timezone": system_timezone(),
            "socket_path": str(_systemd_dir("RUNTIME_DIRECTORY", paths.SYSTEM_RUNTIME_DIR) / "flowd.sock"),
        }
    data = user_data_dir()
    socket_path = user_socket_path() if mode == "user" else default_socket_path()
    return {
        "dags_folder": str(user_config_dir() / "dags"),
        "db_url": f"sqlite:///{data / 'flow.db'}",
        "log_folder": str(data / "logs"),
        "default_timezone": system_timezone(),
        "socket_path": socket_path,
    }


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError("expected a whole number")
            value = int(value)
            if name in ZERO_MEANS_OFF:
                if value < 0:
                    raise ValueError("must be 0 (no limit) or more")
            elif value < 1:
                raise ValueError("must be at least 1")
        elif kind == "float":
            value = float(value)
            if value <= 0:
                raise ValueError("must be positive")
        elif kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError("expected true or false")
                value = value.lower() in ("1", "true", "yes", "on")
            value = bool(value)
        else:
            value = str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name} = {value!r} from {source}: {exc}") from None
    return value


def config_file_path(mode: str | None = None) -> Path:
    """$FLOW_CONFIG, else the mode's flowd.toml (system: $CONFIGURATION_DIRECTORY or /etc/flowd;
    None, a client: flow.paths.client_config, the user's file or else the system's)."""
    explicit = os.environ.get("FLOW_CONFIG")
    if explicit:
        return Path(explicit)
    if mode == "system":
        return _systemd_dir("CONFIGURATION_DIRECTORY", paths.SYSTEM_CONFIG_DIR) / "flowd.toml"
    if mode is None:
        return paths.client_config().path
    return user_config_dir() / "flowd.toml"


def load_settings(flags: dict[str, Any] | None = None, *, config_file: Path | None = None,
                  mode: str | None = None) -> Settings:
    """Resolve settings from defaults, the TOML file, the environment and flags (flag wins).

    `mode` ("user" or "system") picks the defaults; None is a client (`flow`): per-user defaults
    with the socket chosen by who is asking (root talks to the system flowd), or, when the user
    has no flowd.toml and the system service has one, the system's file and defaults, so
    `flow dags test` on a server looks at /etc/flowd/dags (flow.paths.client_config).
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode is None and config_file is None:
        chosen = paths.client_config()
        config_file = chosen.path
        if chosen.system:
            mode = "system"
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, val in _defaults(mode).items():
        values[key], sources[key] = val, "default"
    for f in fields(Settings):
        if f.name not in values and f.name not in ("sources", "notifiers"):
            sources[f.name] = "default"
    path = config_file or config_file_path(mode)
    notifiers: dict[str, Any] = {}
    values["connections_file"], sources["connections_file"] = str(path.parent / "connections.toml"), "default"
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
        from .notifyconf import parse_notifiers

        notifiers = parse_notifiers(data.pop("notifiers", {}), str(path))
        table = data.get("flowd")
        section = {k: v for k, v in data.items() if not isinstance(v, dict)}
        section.update(table if isinstance(table, dict) else {})
        for key, val in section.items():
            if key not in Settings.ENV:
                raise ConfigError(f"unknown setting {key!r} in {path}; known: {', '.join(Settings.ENV)}")
            values[key], sources[key] = _coerce(key, val, str(path)), str(path)
    for key, env in Settings.ENV.items():
        if os.environ.get(env):
            values[key], sources[key] = _coerce(key, os.environ[env], f"${env}"), f"${env}"
    for key, val in (flags or {}).items():
        if val is not None:
            values[key], sources[key] = _coerce(key, val, "command line"), "command line"
    settings = Settings(**values)
    settings.dags_folder = str(Path(settings.dags_folder).expanduser().absolute())
    settings.log_folder = str(Path(settings.log_folder).expanduser().absolute())
    settings.socket_path = str(Path(settings.socket_path).expanduser().absolute())
    settings.connections_file = str(Path(settings.connections_file).expanduser().absolute())
    if settings.metrics_textfile:
        settings.metrics_textfile = str(Path(settings.metrics_textfile).expanduser().absolute())
    if settings.stop_mode not in ("adopt", "kill"):
        raise ConfigError(f"setting stop_mode = {settings.stop_mode!r} from {sources['stop_mode']}: "
                          "expected 'adopt' (running tasks carry on and are adopted) or 'kill'")
    settings.log_level = settings.log_level.lower()
    if settings.log_level not in LOG_LEVELS:
        raise ConfigError(f"setting log_level = {settings.log_level!r} from {sources['log_level']}: "
                          f"expected one of {', '.join(LOG_LEVELS)}")
    settings.min_free_memory = settings.min_free_memory.strip()
    if settings.min_free_memory:
        try:
            parse_threshold(settings.min_free_memory, "min_free_memory")
        except ValueError:
            raise ConfigError(f"setting min_free_memory = {settings.min_free_memory!r} from "
                              f"{sources['min_free_memory']}: expected a share of the host's memory such as "
                              "'10%' or a size such as '2GiB'") from None
    settings.parse_memory_limit = settings.parse_memory_limit.strip()
    if settings.parse_memory_limit:
        try:
            parse_size(settings.parse_memory_limit, "parse_memory_limit")
        except ValueError:
            raise ConfigError(f"setting parse_memory_limit = {settings.parse_memory_limit!r} from "
                              f"{sources['parse_memory_limit']}: expected a size such as '4GiB', "
                              "or empty for no limit") from None
    settings.db_url = normalize_db_url(settings.db_url)
    settings.sources = sources
    settings.notifiers = notifiers
    return settings


def normalize_db_url(url: str) -> str:
    """Accept a bare path as SQLite, so `--db ./flow.db` does what a user means."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().absolute()}"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rest = url[len("sqlite:///"):]
        if rest and rest != ":memory:":
            return f"sqlite:///{Path(rest).expanduser().absolute()}"
    return url


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, fit to print or log."""
    url = re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def render_settings(settings: Settings, *, mode: str, config_file: Path) -> str:
    """Every effective setting as TOML, each with where its value came from.

    The output can be pasted into a flowd.toml as it is; secrets in the database URL are masked.
    """
    state = "read" if config_file.is_file() else "not present"
    lines = [f"# flowd settings ({mode} mode)", f"# configuration file: {config_file} ({state})"]
    rows = []
    for name, value in settings.as_dict().items():
        if name == "db_url":
            value = mask_url(value)
        shown = str(value).lower() if isinstance(value, bool) else (
            str(value) if isinstance(value, int | float) else json.dumps(value))
        rows.append((f"{name} = {shown}", settings.sources.get(name, "default")))
    width = max(len(r[0]) for r in rows)
    lines += [f"{text.ljust(width)}  # {source}" for text, source in rows]
    if settings.notifiers:
        from .notifyconf import render_notifiers

        lines += ["", *render_notifiers(settings.notifiers, str(config_file))]
    return "\n".join(lines) + "\n"
