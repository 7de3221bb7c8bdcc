"""Running feature pipelines on a scheduler. ``airflow``: DAGs built from the registry."""
