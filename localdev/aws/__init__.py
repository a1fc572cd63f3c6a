"""One local AWS endpoint on 127.0.0.1 (default port 4566), so the pipeline runs with no cloud and no Docker.

Two processes, managed by :class:`LocalEndpoint` and by
``python -m localdev.aws up|down|status|restart-companion``:

* **moto server** on an internal port (default public port + 1) serves S3, Kinesis, SNS, SQS, CloudWatch,
  Glue, IAM, STS, Athena, ... entirely in memory. It runs as :mod:`localdev.aws.moto_server`, which
  first fixes moto's Kinesis shards (lost records under concurrent puts, O(n) puts and reads).
  ``down`` discards every AWS resource, and ``up`` then also wipes the companion's persisted state under
  ``<state-dir>/services/``.
* **the companion** (:mod:`localdev.aws.gateway`) owns the public port. It serves the services moto
  lacks or gets wrong itself and forwards every other request to moto unchanged (method, path, query,
  headers, streamed body; the response streams back with its status and headers).

Firehose is served entirely by the companion (:mod:`localdev.aws.firehose`): moto's Firehose never
delivers from a Kinesis source. Delivery is at least once and survives ``restart-companion`` and kill -9.
``GET /_companion/health`` and ``GET /_companion/firehose/<name>`` (delivery counters, lag) and
``POST /_companion/firehose/<name>/flush`` are non-AWS routes for tests and benchmarks.

Adding a service to the companion
---------------------------------
1. Write ``localdev/aws/<module>.py`` with a subclass of :class:`localdev.aws.base.ServiceHandler`::

       class KinesisAnalyticsHandler(ServiceHandler):
           signing_name = "kinesisanalytics"                 # SigV4 credential-scope service
           target_prefixes = ("KinesisAnalytics_20180523",)  # X-Amz-Target prefix(es)
           botocore_service = "kinesisanalyticsv2"           # botocore model used to validate input

           def start(self): ...            # resume background work from self.context.state_dir
           def stop(self): ...             # SIGTERM: flush and persist
           def CreateApplication(self, request: ServiceRequest) -> dict:
               ...                         # request.params is validated against the botocore model
               raise AwsError("ResourceInUseException", "Application x already exists")  # → HTTP 400

   One method per operation, named exactly like the operation; an operation without a method answers
   ``InvalidArgumentException`` ("not supported by the local companion"). Return a dict shaped like the
   botocore output shape (datetimes and epoch floats are both fine, bytes are base64-encoded for you).
   ``self.context`` (:class:`~localdev.aws.base.CompanionContext`) gives ``state_dir`` (private,
   persistent), ``moto_url`` and ``client(service, region)`` (boto3 straight to moto, bypassing the
   gateway), ``endpoint_url`` (the public URL) and ``logger`` (writes to ``<state-dir>/companion.log``).
   Override ``debug(method, path, query)`` to serve ``/_companion/<signing_name>/<path>``.
2. Register it in :data:`localdev.aws.gateway.SERVICE_HANDLERS` (signing name → ``"module:Class"``).
   ``kinesisanalytics`` is pre-registered as ``localdev.aws.flink.api:KinesisAnalyticsHandler``:
   until that module exists its requests go to moto; once it exists it must import cleanly, or the
   companion refuses to start (``companion.out`` has the traceback).
"""

from localdev.aws.endpoint import EndpointError, LocalEndpoint

__all__ = ["EndpointError", "LocalEndpoint"]
