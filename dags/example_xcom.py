"""TaskFlow XComs: two tasks' results feed a third, which multiplies them."""

from __future__ import annotations

import pendulum

from flow import dag, task


@task
def add1(x: int) -> int:
    return x + 1


@task
def add2(x: int) -> int:
    return x + 2


@task
def dot(a: int, b: int) -> int:
    return a * b


@dag(
    dag_id="example_xcom",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    tags=["example"],
)
def example_xcom(x: int = 2):
    """With the default x=2: add1 returns 3, add2 returns 4, dot returns 12."""
    dot(add1(x), add2(x))


example_xcom()
