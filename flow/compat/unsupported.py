"""The area of Airflow packages that only hold sub-packages (``airflow.providers``): no names of its own."""

__all__: list[str] = []
