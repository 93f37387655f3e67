"""A TaskFlow ETL: extract -> transform -> load, passing a dict along as XComs."""

from __future__ import annotations

import json

import pendulum

from flow import dag, task


@dag(
    schedule="0 9 * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="Europe/Berlin"),
    catchup=False,
    tags=["example", "taskflow"],
)
def example_taskflow():
    """Sum a day's orders every morning at 09:00 Berlin time."""

    @task(retries=1)
    def extract() -> dict[str, float]:
        orders = '{"1001": 301.27, "1002": 433.21, "1003": 502.22}'
        return json.loads(orders)

    @task
    def transform(orders: dict[str, float]) -> dict[str, float]:
        return {"total_value": round(sum(orders.values()), 2), "count": len(orders)}

    @task
    def load(summary: dict[str, float], ds=None) -> str:
        line = f"{ds}: {summary['count']} orders, total {summary['total_value']:.2f}"
        print(line)
        return line

    load(transform(extract()))


example_taskflow()
