"""Airflow DAG files, unchanged, under flow: the ``airflow`` import namespace (see hook.py).

One module per Airflow area (core, operators, utils, exceptions, macros, timetables); each
holds only flow's own objects under Airflow's names, so ``airflow.X is flow.X``.
"""

from flow.compat.hook import install, installed, uninstall

__all__ = ["install", "installed", "uninstall"]
