"""Prometheus metrics from a real flowd: scraped over HTTP (TCP and a Unix socket) and from the
node_exporter textfile, and read back with prometheus_client's own parsers."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Flowd, make_flowd
from .test_abuse import call
from .test_flowd_process import wait_until

DAGS = {
    "good.py": """
import pendulum
from flow import DAG
from flow.operators import BashOperator
with DAG("good", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    BashOperator(task_id="a", bash_command="echo a") >> BashOperator(task_id="b", bash_command="echo b")
""",
    "flaky.py": """
import pendulum
from flow import DAG
from flow.operators import BashOperator
with DAG("flaky", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    BashOperator(task_id="boom", bash_command="exit 3", retries=1, retry_delay=0)
""",
    "broken.py": "import no_such_module_anywhere\n",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples(text: str, parse=text_string_to_metric_families) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a whole exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in parse(text) for s in family.samples}


@pytest.fixture
def flowd(tmp_path: Path):
    f = make_flowd(tmp_path)
    port = free_port()
    f.env.update(FLOW_METRICS_LISTEN=f"127.0.0.1:{port}", FLOW_METRICS_TEXTFILE=str(tmp_path / "prom" / "flowd.prom"),
                 FLOW_METRICS_TEXTFILE_INTERVAL="0.2")
    (tmp_path / "prom").mkdir()
    for name, source in DAGS.items():
        f.add_dag(name, source)
    f.start()
    f.url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
    yield f
    f.discard()


def finished(f: Flowd, dag_id: str) -> str:
    run_id = call(f.socket_path, "dags.trigger", dag_id=dag_id)["run"]["run_id"]
    wait_until(lambda: call(f.socket_path, "runs.get", dag_id=dag_id, run_id=run_id)["run"]["state"]
               in ("success", "failed"), 60, f"the run of {dag_id} to finish")
    return run_id


def scrape(url: str, accept: str = "") -> tuple[str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode(), resp.headers["Content-Type"]


def test_a_scrape_counts_runs_tries_and_delays_of_real_runs(flowd: Flowd):
    wait_until(lambda: {"good", "flaky"} <= {d["dag_id"] for d in call(flowd.socket_path, "dags.list")["dags"]},
               30, "the DAGs to load")
    finished(flowd, "good")
    finished(flowd, "flaky")
    text, content_type = scrape(flowd.url)
    assert content_type.startswith("text/plain")
    got = samples(text)
    assert got[("flow_dag_runs_finished_total", (("state", "success"),))] == 1
    assert got[("flow_dag_runs_finished_total", (("state", "failed"),))] == 1
    assert got[("flow_task_tries_started_total", ())] == 4  # a, b, and boom twice
    assert got[("flow_task_tries_finished_total", (("outcome", "success"),))] == 2
    assert got[("flow_task_tries_finished_total", (("outcome", "up_for_retry"),))] == 1
    assert got[("flow_task_tries_finished_total", (("outcome", "failed"),))] == 1
    assert got[("flow_dag_run_start_delay_seconds_count", ())] == 2
    assert got[("flow_dag_run_start_delay_seconds_bucket", (("le", "+Inf"),))] == 2
    assert got[("flow_task_start_delay_seconds_count", ())] == 4
    assert got[("flow_dag_runs", (("state", "running"),))] == 0
    assert got[("flow_slots_in_use", ())] == 0 and got[("flow_slots", ())] == 32
    assert got[("flow_queue_depth", ())] == 0 and got[("flow_sensors_running", ())] == 0
    assert got[("flow_dags", ())] == 2
    broken = str(Path(flowd.dags_folder) / "broken.py")
    assert got[("flow_dag_file_import_errors", (("file", broken),))] == 1
    good = [k for k in got if k[0] == "flow_dag_file_parse_seconds" and k[1] != (("file", broken),)]
    assert good and all(0 < got[k] < 60 for k in good), good  # each parsed file's time, broken or not
    assert 0 < got[("flow_dag_file_parse_seconds", (("file", broken),))] < 60
    assert got[("flow_dag_last_success_timestamp_seconds", (("dag_id", "good"),))] > 1.7e9
    assert ("flow_dag_last_success_timestamp_seconds", (("dag_id", "flaky"),)) not in got
    assert got[("flow_alerts_sent_total", ())] == 0 and got[("flow_alerts_failed_total", ())] == 0
    assert got[("flowd_process_resident_memory_bytes", ())] > 10e6
    assert got[("flow_loop_lag_seconds", ())] >= 0
    assert got[("flow_socket_connections", (("phase", "open"),))] >= 0

    om, om_type = scrape(flowd.url, "application/openmetrics-text; version=1.0.0")
    assert om_type.startswith("application/openmetrics-text") and om.rstrip().endswith("# EOF")
    assert samples(om, openmetrics_families)[("flow_task_tries_started_total", ())] == 4

    textfile = Path(flowd.dags_folder).parent / "prom" / "flowd.prom"
    wait_until(lambda: textfile.exists() and "flow_task_tries_started_total 4.0" in textfile.read_text(), 10,
               "the textfile to show the tries")
    from_file = samples(textfile.read_text())
    assert from_file[("flow_task_tries_finished_total", (("outcome", "failed"),))] == 1
    assert not [p for p in textfile.parent.iterdir() if p.name != "flowd.prom"], "a temporary file was left"

    with pytest.raises(urllib.error.HTTPError) as err:
        scrape(flowd.url.replace("/metrics", "/nope"))
    assert err.value.code == 404
    assert call(flowd.socket_path, "status")["pid"] == flowd.proc.pid

    last = got[("flow_dag_last_success_timestamp_seconds", (("dag_id", "good"),))]
    assert flowd.stop() == 0
    flowd.start()  # counters start again from 0; the last success is read back from the database
    again = samples(scrape(flowd.url)[0])
    assert again[("flow_task_tries_started_total", ())] == 0
    # the live value is when flowd saw the success, the stored one the tick's time: a busy tick apart
    assert again[("flow_dag_last_success_timestamp_seconds", (("dag_id", "good"),))] == pytest.approx(last, abs=30)


def test_metrics_on_a_unix_socket_and_a_bad_address_is_one_line(tmp_path: Path):
    f = make_flowd(tmp_path)
    try:
        path = str(Path(f.socket_path).parent / "metrics.sock")
        f.env.update(FLOW_METRICS_LISTEN=f"unix:{path}")
        f.start()
        assert os.stat(path).st_mode & 0o777 == 0o660  # scrapers in the viewer group, not every local user
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: flowd\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 OK")
        assert samples(body.decode())[("flow_task_tries_started_total", ())] == 0
        assert f.stop() == 0

        f.env.update(FLOW_METRICS_LISTEN="localhost")
        run = subprocess.run(f.command(), env=f.full_env(), capture_output=True, text=True, timeout=30)
        assert run.returncode == 1
        assert run.stderr.strip().splitlines()[-1] == (
            "flowd: metrics_listen = 'localhost': expected HOST:PORT (e.g. 127.0.0.1:9464) or unix:/absolute/path")
    finally:
        f.discard()
