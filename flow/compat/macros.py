"""``airflow.macros``: the same helpers templates reach as ``macros.*`` (the objects of flow.context.MACROS)."""

from flow.context import MACROS, ds_add, ds_format

datetime = MACROS.datetime
timedelta = MACROS.timedelta
dateutil = MACROS.dateutil
json = MACROS.json
time = MACROS.time
uuid = MACROS.uuid
random = MACROS.random

__all__ = ["datetime", "dateutil", "ds_add", "ds_format", "json", "random", "time", "timedelta", "uuid"]
