"""The Firehose API (Firehose_20150804) served by the companion, backed by :mod:`.delivery` workers."""

from __future__ import annotations

import copy
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from localdev.aws.base import AwsError, CompanionContext, ServiceHandler, ServiceRequest
from localdev.aws.firehose.delivery import DeliveryWorker
from localdev.aws.firehose.direct_put import Spool
from localdev.aws.firehose.streams import (
    UNSUPPORTED_DESTINATIONS,
    StreamStore,
    build_plan,
    describe,
    invalid,
    merge_update,
    normalise_destination,
    now_epoch,
    parse_arn,
)

#: Seconds a new stream stays CREATING before it turns ACTIVE and starts delivering.
CREATE_SECONDS = float(os.environ.get("LOCAL_FIREHOSE_CREATE_SECONDS", "0.5"))
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_TAGS = 50


def _tags(raw: list[dict] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in raw or []}


class FirehoseHandler(ServiceHandler):
    signing_name = "firehose"
    target_prefixes = ("Firehose_20150804",)
    botocore_service = "firehose"

    def __init__(self, context: CompanionContext):
        super().__init__(context)
        self.store = StreamStore(context.state_dir)
        self.workers: dict[str, DeliveryWorker] = {}
        self.spools: dict[str, Spool] = {}
        self.lock = self.store.lock
        self._timers: list[threading.Timer] = []

    # -- paths -------------------------------------------------------------------------------------------
    def _checkpoint_path(self, key: str) -> Path:
        return self.context.state_dir / "checkpoints" / (key.replace("/", "__") + ".json")

    def _spool_dir(self, key: str) -> Path:
        return self.context.state_dir / "spool" / key.replace("/", "__")

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        with self.lock:
            for key, stream in list(self.store.streams.items()):
                if stream["status"] == "DELETING":
                    self._finish_delete(key)
                    continue
                if stream["status"] == "CREATING":
                    stream["status"] = "ACTIVE"
                if stream["type"] == "DirectPut":
                    self.spools[key] = Spool(self._spool_dir(key))
                self._start_worker(key, stream)
            self.store.save()
        self.log.info("firehose: resumed %d delivery streams", len(self.workers))

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        workers = list(self.workers.values())
        for worker in workers:
            worker.stopping.set()
            worker.wake.set()
        for worker in workers:
            worker.stop()
        for spool in self.spools.values():
            spool.close()

    def _start_worker(self, key: str, stream: dict) -> None:
        region = stream["region"]
        kinesis = None
        if stream["type"] == "KinesisStreamAsSource":
            source_region = parse_arn(stream["source"]["KinesisStreamARN"], "kinesis", "stream")[0]
            kinesis = self.context.client("kinesis", source_region)
        worker = DeliveryWorker(
            copy.deepcopy(stream),
            self._checkpoint_path(key),
            kinesis,
            self.context.client("s3", region),
            self.spools.get(key),
            self.log,
        )
        self.workers[key] = worker
        worker.start()

    def _activate(self, key: str, created: float) -> None:
        with self.lock:
            stream = self.store.streams.get(key)
            if stream is None or stream["created"] != created or stream["status"] != "CREATING":
                return
            stream["status"] = "ACTIVE"
            self.store.save()
            self._start_worker(key, stream)

    def _finish_delete(self, key: str) -> None:
        worker = self.workers.pop(key, None)
        if worker is not None:
            worker.stop()
        spool = self.spools.pop(key, None)
        if spool is not None:
            spool.destroy()
        with self.lock:
            self.store.streams.pop(key, None)
            self.store.save()
        self._checkpoint_path(key).unlink(missing_ok=True)

    # -- operations ----------------------------------------------------------------------------------------
    def CreateDeliveryStream(self, req: ServiceRequest) -> dict:
        p = req.params
        name = p["DeliveryStreamName"]
        stream_type = p.get("DeliveryStreamType", "DirectPut")
        if stream_type not in ("DirectPut", "KinesisStreamAsSource"):
            raise invalid(f"DeliveryStreamType {stream_type!r} is not supported by the local Firehose")
        for unsupported in UNSUPPORTED_DESTINATIONS:
            if unsupported in p:
                raise invalid(
                    f"{unsupported} is not supported by the local Firehose "
                    "(use ExtendedS3DestinationConfiguration or S3DestinationConfiguration)"
                )
        if "ExtendedS3DestinationConfiguration" in p and "S3DestinationConfiguration" in p:
            raise invalid(
                "Specify only one of ExtendedS3DestinationConfiguration and S3DestinationConfiguration"
            )
        if "ExtendedS3DestinationConfiguration" in p:
            kind, raw_dest = "ExtendedS3", p["ExtendedS3DestinationConfiguration"]
        elif "S3DestinationConfiguration" in p:
            kind, raw_dest = "S3", p["S3DestinationConfiguration"]
        else:
            raise invalid("A destination configuration is required (ExtendedS3DestinationConfiguration)")
        if p.get("DeliveryStreamEncryptionConfigurationInput"):
            raise invalid("DeliveryStreamEncryptionConfigurationInput is not supported by the local Firehose")
        destination = normalise_destination(raw_dest)
        build_plan(destination)  # semantic validation; raises InvalidArgumentException

        created = now_epoch()
        source: dict[str, Any] = {}
        if stream_type == "KinesisStreamAsSource":
            src = p.get("KinesisStreamSourceConfiguration")
            if not src:
                raise invalid(
                    "KinesisStreamSourceConfiguration is required for DeliveryStreamType "
                    "KinesisStreamAsSource"
                )
            if p.get("DirectPutSourceConfiguration"):
                raise invalid("DirectPutSourceConfiguration is not allowed with KinesisStreamAsSource")
            arn = src["KinesisStreamARN"]
            source_region, _, stream_name = parse_arn(arn, "kinesis", "stream")
            try:
                self.context.client("kinesis", source_region).describe_stream_summary(StreamARN=arn)
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                    raise invalid(f"Kinesis stream {arn} does not exist") from None
                raise
            source = {"KinesisStreamARN": arn, "RoleARN": src["RoleARN"], "DeliveryStartTimestamp": created}
        else:
            if p.get("KinesisStreamSourceConfiguration"):
                raise invalid(
                    "KinesisStreamSourceConfiguration requires DeliveryStreamType KinesisStreamAsSource"
                )
            direct = p.get("DirectPutSourceConfiguration") or {}
            if direct:
                source = {"ThroughputHintInMBs": direct["ThroughputHintInMBs"]}

        tags = _tags(p.get("Tags"))
        key = self.store.key(req.region, name)
        with self.lock:
            if key in self.store.streams:
                raise AwsError(
                    "ResourceInUseException",
                    f"Firehose {name} under accountId {req.account_id} already exists",
                )
            stream = {
                "name": name,
                "region": req.region,
                "arn": f"arn:aws:firehose:{req.region}:{req.account_id}:deliverystream/{name}",
                "type": stream_type,
                "status": "CREATING",
                "version": 1,
                "created": created,
                "last_updated": None,
                "source": source,
                "destination_kind": kind,
                "destination": destination,
                "tags": tags,
            }
            # A leftover checkpoint of an earlier stream with this name must not skip this one's records.
            self._checkpoint_path(key).unlink(missing_ok=True)
            self.store.streams[key] = stream
            self.store.save()
            if stream_type == "DirectPut":
                self.spools[key] = Spool(self._spool_dir(key))
        timer = threading.Timer(CREATE_SECONDS, self._activate, args=(key, created))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()
        self.log.info("firehose: created %s (%s)", name, stream_type)
        return {"DeliveryStreamARN": stream["arn"]}

    def DescribeDeliveryStream(self, req: ServiceRequest) -> dict:
        with self.lock:
            stream = self.store.get(req.region, req.params["DeliveryStreamName"], req.account_id)
            return {"DeliveryStreamDescription": describe(stream)}

    def ListDeliveryStreams(self, req: ServiceRequest) -> dict:
        p = req.params
        limit = p.get("Limit", 10)
        wanted_type = p.get("DeliveryStreamType")
        start_after = p.get("ExclusiveStartDeliveryStreamName")
        with self.lock:
            names = sorted(
                s["name"]
                for s in self.store.streams.values()
                if s["region"] == req.region and (wanted_type is None or s["type"] == wanted_type)
            )
        if start_after:
            names = [n for n in names if n > start_after]
        return {"DeliveryStreamNames": names[:limit], "HasMoreDeliveryStreams": len(names) > limit}

    def DeleteDeliveryStream(self, req: ServiceRequest) -> dict:
        name = req.params["DeliveryStreamName"]
        key = self.store.key(req.region, name)
        with self.lock:
            stream = self.store.get(req.region, name, req.account_id)
            if stream["status"] == "DELETING":
                return {}
            stream["status"] = "DELETING"
            self.store.save()
        threading.Thread(target=self._finish_delete, args=(key,), name=f"delete-{name}", daemon=True).start()
        self.log.info("firehose: deleting %s", name)
        return {}

    def UpdateDestination(self, req: ServiceRequest) -> dict:
        p = req.params
        name = p["DeliveryStreamName"]
        key = self.store.key(req.region, name)
        for field in p:
            if field.endswith("DestinationUpdate") and field not in (
                "ExtendedS3DestinationUpdate",
                "S3DestinationUpdate",
            ):
                raise invalid(f"{field} is not supported by the local Firehose")
        with self.lock:
            stream = self.store.get(req.region, name, req.account_id)
            if stream["status"] != "ACTIVE":
                raise AwsError(
                    "ResourceInUseException",
                    f"Firehose {name} is {stream['status']}; UpdateDestination needs an ACTIVE stream",
                )
            if p["CurrentDeliveryStreamVersionId"] != str(stream["version"]):
                raise AwsError(
                    "ConcurrentModificationException",
                    f"Cannot update firehose: {name} since the current version id: {stream['version']} and "
                    f"the specified version id: {p['CurrentDeliveryStreamVersionId']} do not match",
                )
            if p.get("DestinationId") != "destinationId-000000000001":
                raise invalid(f"DestinationId {p.get('DestinationId')!r} does not exist for Firehose {name}")
            update = p.get("ExtendedS3DestinationUpdate") or p.get("S3DestinationUpdate")
            if not update:
                raise invalid("UpdateDestination needs ExtendedS3DestinationUpdate (or S3DestinationUpdate)")
            was_dp = bool(
                (stream["destination"].get("DynamicPartitioningConfiguration") or {}).get("Enabled")
            )
            merged = normalise_destination(merge_update(stream["destination"], update))
            now_dp = bool((merged.get("DynamicPartitioningConfiguration") or {}).get("Enabled"))
            if now_dp and not was_dp:
                raise invalid(
                    "You cannot enable dynamic partitioning for an existing Firehose stream that does not "
                    "have "
                    "dynamic partitioning already enabled"
                )
            build_plan(merged)
            stream["destination"] = merged
            if "ExtendedS3DestinationUpdate" in p:
                stream["destination_kind"] = "ExtendedS3"
            stream["version"] += 1
            stream["last_updated"] = now_epoch()
            self.store.save()
            worker = self.workers.get(key)
            if worker is not None:
                worker.reconfigure(copy.deepcopy(stream))
        return {}

    def TagDeliveryStream(self, req: ServiceRequest) -> dict:
        with self.lock:
            stream = self.store.get(req.region, req.params["DeliveryStreamName"], req.account_id)
            merged = {**stream["tags"], **_tags(req.params["Tags"])}
            if len(merged) > MAX_TAGS:
                raise AwsError(
                    "LimitExceededException",
                    f"Firehose {stream['name']} would have {len(merged)} tags; the limit is {MAX_TAGS}",
                )
            stream["tags"] = merged
            self.store.save()
        return {}

    def UntagDeliveryStream(self, req: ServiceRequest) -> dict:
        with self.lock:
            stream = self.store.get(req.region, req.params["DeliveryStreamName"], req.account_id)
            for tag_key in req.params["TagKeys"]:
                stream["tags"].pop(tag_key, None)
            self.store.save()
        return {}

    def ListTagsForDeliveryStream(self, req: ServiceRequest) -> dict:
        p = req.params
        with self.lock:
            stream = self.store.get(req.region, p["DeliveryStreamName"], req.account_id)
            items = sorted(stream["tags"].items())
        if p.get("ExclusiveStartTagKey"):
            items = [(k, v) for k, v in items if k > p["ExclusiveStartTagKey"]]
        limit = p.get("Limit", 50)
        return {
            "Tags": [{"Key": k, "Value": v} for k, v in items[:limit]],
            "HasMoreTags": len(items) > limit,
        }

    def _direct_put_target(self, req: ServiceRequest) -> tuple[str, dict]:
        name = req.params["DeliveryStreamName"]
        with self.lock:
            stream = self.store.get(req.region, name, req.account_id)
            if stream["type"] != "DirectPut":
                raise invalid(
                    f"This operation is not permitted on KinesisStreamAsSource delivery stream type. "
                    f"Firehose {name} reads from {stream['source']['KinesisStreamARN']}; put records there."
                )
            if stream["status"] == "DELETING":
                raise AwsError(
                    "ResourceNotFoundException", f"Firehose {name} under account {req.account_id} not found."
                )
            return self.store.key(req.region, name), stream

    def PutRecord(self, req: ServiceRequest) -> dict:
        key, _ = self._direct_put_target(req)
        self.spools[key].append([req.params["Record"]["Data"]], int(time.time() * 1000))
        self._wake(key)
        return {"RecordId": uuid.uuid4().hex * 2, "Encrypted": False}

    def PutRecordBatch(self, req: ServiceRequest) -> dict:
        key, _ = self._direct_put_target(req)
        records = [r["Data"] for r in req.params["Records"]]
        total = sum(len(r) for r in records)
        if total > MAX_BATCH_BYTES:
            raise invalid(f"PutRecordBatch request is {total} bytes; the limit is {MAX_BATCH_BYTES} bytes")
        self.spools[key].append(records, int(time.time() * 1000))
        self._wake(key)
        return {
            "FailedPutCount": 0,
            "Encrypted": False,
            "RequestResponses": [{"RecordId": uuid.uuid4().hex * 2} for _ in records],
        }

    def _wake(self, key: str) -> None:
        worker = self.workers.get(key)
        if worker is not None:
            worker.wake.set()

    # -- non-AWS routes for tests and benchmarks ---------------------------------------------------------
    def debug(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        """``GET /_companion/firehose/[<name>]`` → delivery stats; ``POST .../<name>/flush`` → flush now."""
        region = (query.get("region") or [None])[0]
        parts = [p for p in path.split("/") if p]
        with self.lock:
            if not parts and method == "GET":
                return 200, {"streams": {k: self._stats(k) for k in sorted(self.store.streams)}}
            if not parts:
                return 405, {"error": "use GET"}
            matches = [
                k
                for k, s in self.store.streams.items()
                if s["name"] == parts[0] and region in (None, s["region"])
            ]
        if not matches:
            return 404, {"error": f"no delivery stream {parts[0]!r}"}
        if len(matches) > 1:
            return 400, {"error": f"{parts[0]!r} exists in several regions; add ?region="}
        key = matches[0]
        if len(parts) == 1 and method == "GET":
            return 200, self._stats(key)
        if parts[1:] == ["flush"] and method == "POST":
            worker = self.workers.get(key)
            if worker is None:
                return 409, {"error": f"delivery stream {parts[0]!r} is not active"}
            done = worker.request_flush()
            return (200 if done else 504), self._stats(key)
        return 404, {"error": f"no route {method} {path!r}"}

    def _stats(self, key: str) -> dict:
        stream = self.store.streams.get(key, {})
        worker = self.workers.get(key)
        out = {"name": stream.get("name"), "status": stream.get("status"), "version": stream.get("version")}
        if worker is not None:
            out.update(worker.snapshot())
        return out
