"""What runs the pipeline on one machine only: the local AWS endpoint, the local Flink runner, the Airflow launchers, the demo and the CLI. Never imported by dags/, include/ or plugins/."""
