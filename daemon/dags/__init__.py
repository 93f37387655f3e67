"""Reading the DAG folder: the pool of parse children (more of the folder's code moves here later)."""
