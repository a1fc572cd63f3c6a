# syntax=docker/dockerfile:1
# The Airflow image of docker-compose.yaml: the official Airflow image, at the version uv.lock pins, plus
# requirements/mwaa.txt, the file an AWS deployment installs (generated from the lock by `make requirements`).
# Build context: the repository root (see .dockerignore).
FROM apache/airflow:3.3.2-python3.11

# As Airflow's "extending the image" guide does it: pin apache-airflow itself so pip cannot move it, and let
# the constraint line at the top of mwaa.txt keep Airflow's own dependencies where Airflow tested them.
COPY requirements/mwaa.txt /requirements/mwaa.txt
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /requirements/mwaa.txt

# The DAGs folder as docs/deploy-aws.md lays it out: the DAG files and include/ side by side in it, include/
# kept out of DAG parsing. docker-compose.yaml mounts the repository's dags/ and include/ on these two folders
# (live edits, read-only); the folder itself stays the image's, so no mount point is created in the checkout.
USER root
RUN mkdir -p /opt/airflow/dags/clickstream_dags /opt/airflow/dags/include \
    && printf 'include/\n' > /opt/airflow/dags/.airflowignore \
    && chown -R airflow:0 /opt/airflow/dags
USER airflow
