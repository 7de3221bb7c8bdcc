"""Airflow DAGs of a feature repo: one DAG per schedule, built from the repo's applied registry.

Point Airflow's dags folder here and set FEATURESTORE_REPO to the repo (see the README). Parsing
reads only the registry, so it is cheap; applying a view adds or removes its DAG at the next parse.
"""

from featurestore.orchestration.airflow import build_dags

globals().update(build_dags())
