"""The IAM policies of include/iam.py against what the code calls.

* Statically: every AWS operation the code can call (collected from the source by tests/iam_scan.py, the
  amazon provider's operators, sensors, hooks and notifiers included) maps to IAM actions that the Airflow
  role allows on the ARN the call targets; nothing in the policy goes unused; no action wildcard; no
  ``"Resource": "*"`` except for actions AWS offers no resource-level permission for.
* Dynamically, for S3 where the key decides: compaction, the Flink code upload, bucket setup and teardown run
  against moto's in-process S3 with every request recorded, and each request's action and object ARN must be
  allowed (or, for the teardown, denied by the ``--no-teardown`` policy).
* The two service roles are checked against what provisioning configures them to do (Firehose's prefixes,
  the Flink application's code location and sink path), and against what they must not be able to do.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path

import boto3
import botocore.session
import pytest
from moto import mock_aws

from include import iam
from include.config import Settings
from tests.iam_scan import Call, Scan, scan

REPO = Path(__file__).resolve().parent.parent
#: include/ and dags/ are imported as packages; Airflow puts plugins/ itself on sys.path.
ROOTS = {name: REPO / name for name in ("include", "dags")} | (
    {"": REPO / "plugins"} if (REPO / "plugins").is_dir() else {}
)
#: Files only the clickstream_teardown DAG runs: left out for the --no-teardown policy.
TEARDOWN_FILES = (REPO / "include" / "provision" / "teardown.py", REPO / "dags" / "clickstream_teardown.py")

CFG = Settings(bucket="clickstream-lake", artifacts_bucket="clickstream-artifacts")
ACCOUNT, REGION = "123456789012", "eu-west-1"
TARGET = iam.Target("aws", ACCOUNT, REGION)
FIREHOSE_ROLE = CFG.firehose_role_arn
FLINK_ROLE = CFG.flink_role_arn


# ----------------------------------------------------------------------------------------- operation → IAM
#: S3 operations authorised under another action's name (Service Authorization Reference, Amazon S3).
S3_ACTIONS = {
    "HeadBucket": ("s3:ListBucket",),
    "ListObjects": ("s3:ListBucket",),
    "ListObjectsV2": ("s3:ListBucket",),
    "ListObjectVersions": ("s3:ListBucketVersions",),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads",),
    "ListParts": ("s3:ListMultipartUploadParts",),
    "HeadObject": ("s3:GetObject",),
    "DeleteObjects": ("s3:DeleteObject",),
    "PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "CreateMultipartUpload": ("s3:PutObject",),
    "UploadPart": ("s3:PutObject",),
    "CompleteMultipartUpload": ("s3:PutObject",),
    "CopyObject": ("s3:PutObject", "s3:GetObject"),  # put on the target, get on the source
    "UploadPartCopy": ("s3:PutObject", "s3:GetObject"),
}
#: Permissions an operation needs beyond its own action: passing a role to the service, with the service.
IMPLIED = {
    ("firehose", "CreateDeliveryStream"): (("iam:PassRole", FIREHOSE_ROLE, "firehose.amazonaws.com"),),
    ("firehose", "UpdateDestination"): (("iam:PassRole", FIREHOSE_ROLE, "firehose.amazonaws.com"),),
    ("kinesisanalyticsv2", "CreateApplication"): (
        ("iam:PassRole", FLINK_ROLE, "kinesisanalytics.amazonaws.com"),
        # Tags on create are authorised as TagResource too
        ("kinesisanalytics:TagResource", None, None),
    ),
}


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    """The actions IAM authorises an operation as: its own name under the service's signing name
    (``kinesisanalyticsv2`` signs as ``kinesisanalytics``), except for the S3 renames above."""
    if service == "s3" and operation in S3_ACTIONS:
        return S3_ACTIONS[operation]
    return (f"{_signing_name(service)}:{operation}",)


@cache
def _signing_name(service: str) -> str:
    return botocore.session.get_session().get_service_model(service).signing_name


def lake_arn(key: str = "") -> str:
    return f"arn:aws:s3:::{CFG.bucket}" + (f"/{key}" if key else "")


#: One key in every area of the lake and the Flink code object: an object-level call must be allowed on one.
SAMPLE_OBJECTS = [
    lake_arn("raw/events/event_date=2026-01-01/event_hour=00/x.gz"),
    lake_arn("raw/errors/processing-failed/2026/01/01/00/x.gz"),
    lake_arn("compacted/events/event_date=2026-01-01/event_hour=00/part-00000.parquet"),
    lake_arn("compacted/_staging/run/part-00000.parquet"),
    lake_arn("quarantine/events/event_date=2026-01-01/event_hour=00/quarantine-00000.jsonl.gz"),
    lake_arn("manifests/compaction/event_date=2026-01-01/event_hour=00/manifest.json"),
    lake_arn("streaming/sessions/part-0.json"),
    f"arn:aws:s3:::{CFG.artifacts_bucket}/{CFG.flink_code_key}",
]


def targets(service: str, operation: str, action: str) -> list[str] | None:
    """ARNs the call is authorised against (all must be allowed); None for object-level S3 (any sample)."""
    arn = f":{REGION}:{ACCOUNT}:"
    if service == "s3":
        return [lake_arn()] if "Bucket" in action else None
    if service == "kinesis":
        return [f"arn:aws:kinesis{arn}stream/{CFG.stream_name}"]
    if service == "firehose":
        return [f"arn:aws:firehose{arn}deliverystream/{CFG.delivery_stream}"]
    if service == "kinesisanalyticsv2":
        return [f"arn:aws:kinesisanalytics{arn}application/{CFG.flink_app}"]
    if service == "sns":
        return ["*"] if operation == "ListTopics" else [f"arn:aws:sns{arn}{CFG.alert_topic}"]
    if service == "sqs":
        return [f"arn:aws:sqs{arn}{CFG.alert_queue}"]
    if service == "glue":
        scope = [f"arn:aws:glue{arn}catalog", f"arn:aws:glue{arn}database/{CFG.glue_database}"]
        if "Database" in operation:
            return scope
        return scope + [f"arn:aws:glue{arn}table/{CFG.glue_database}/{t}" for t in iam.managed_tables(CFG)]
    raise AssertionError(f"no target ARN rule for {service}:{operation}; add one to tests/test_iam.py")


# ----------------------------------------------------------------------------------------- policy evaluation
def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, pairs in condition.items():
        for key, expected in pairs.items():
            have = context.get(key)
            if have is None:
                return False
            if operator in ("StringEquals", "ArnEquals"):
                ok = have in _listed(expected)
            elif operator in ("StringLike", "ArnLike"):
                ok = any(fnmatchcase(have, e) for e in _listed(expected))
            else:
                return False  # an operator this evaluator does not know never grants
            if not ok:
                return False
    return True


def allowed(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """Whether an Allow statement grants ``action`` on ``resource`` (identity policy, no Deny statements)."""
    for statement in policy["Statement"]:
        assert (
            statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        )
        if not any(fnmatchcase(action.lower(), a.lower()) for a in _listed(statement["Action"])):
            continue
        if not any(fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
            continue
        if _condition_holds(statement.get("Condition", {}), context or {}):
            return True
    return False


def violations(calls: set[Call], policy: dict) -> list[str]:
    """Every collected call whose IAM actions the policy does not allow on the call's target."""
    problems = []
    for call in sorted(calls, key=lambda c: (c.service, c.operation, c.where)):
        needed = [(a, None, None) for a in iam_actions(call.service, call.operation)]
        needed += list(IMPLIED.get((call.service, call.operation), ()))
        for action, resource, passed_to in needed:
            if action in iam.PERMISSION_FREE_ACTIONS:
                continue
            if resource is not None:
                context = {"iam:PassedToService": passed_to} if passed_to else {}
                ok = allowed(policy, action, resource, context)
                resources = [resource]
            else:
                resources = targets(call.service, call.operation, action)
                if resources is None:
                    ok = any(allowed(policy, action, r) for r in SAMPLE_OBJECTS)
                else:
                    ok = all(allowed(policy, action, r) for r in resources)
            if not ok:
                problems.append(
                    f"{action} on {resources or 'any lake object'} for {call.via} at {call.where}"
                )
    return problems


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def code() -> Scan:
    return scan(ROOTS)


@pytest.fixture(scope="module")
def code_without_teardown() -> Scan:
    for path in TEARDOWN_FILES:
        assert path.is_file(), f"{path} is gone: update TEARDOWN_FILES in tests/test_iam.py"
    return scan(ROOTS, exclude=TEARDOWN_FILES)


@pytest.fixture(scope="module")
def airflow() -> dict:
    return iam.airflow_policy(CFG, TARGET)


def _operations(scan_result: Scan) -> set[tuple[str, str]]:
    return scan_result.operations()


# ----------------------------------------------------------------------------------------- static checks
def test_scan_traces_every_aws_call_to_its_client(code):
    assert code.unresolved == []


def test_scan_finds_calls_through_helpers_classes_and_the_provider(code):
    """Calls the scanner must see: a sample of each way a client reaches a call, so a blind scanner fails."""
    found = {(c.service, c.operation): c for c in code.calls}
    expected = {
        ("kinesis", "PutRecords"): "include/producer/kinesis_writer.py",  # self.client of a class
        ("s3", "ListObjectsV2"): "include/compaction/layout.py",  # paginator, client passed down 3 calls
        ("s3", "CopyObject"): "include/compaction/publish.py",  # boto3's transfer copy()
        ("s3", "PutObject"): "include/flink_app/package.py",
        ("glue", "CreatePartition"): "include/compaction/catalog.py",
        (
            "kinesisanalyticsv2",
            "StartApplication",
        ): "airflow/providers/amazon/aws/operators/kinesis_analytics.py",
        (
            "kinesisanalyticsv2",
            "StopApplication",
        ): "airflow/providers/amazon/aws/operators/kinesis_analytics.py",
        (
            "kinesisanalyticsv2",
            "DescribeApplication",
        ): "airflow/providers/amazon/aws/sensors/kinesis_analytics.py",
        ("sns", "Publish"): "airflow/providers/amazon/aws/hooks/sns.py",  # SnsNotifier → SnsHook
        ("sts", "GetCallerIdentity"): "include/callbacks.py",
    }
    for operation, path in expected.items():
        assert operation in found, f"the scan lost {operation}"
        wheres = {c.where.rsplit(":", 1)[0] for c in code.calls if (c.service, c.operation) == operation}
        assert path in wheres, f"{operation} expected from {path}, found at {sorted(wheres)}"


def test_every_called_action_is_allowed_on_its_resource(code, airflow):
    assert violations(code.calls, airflow) == []


def test_no_teardown_policy_allows_everything_else_and_no_deletion(code, code_without_teardown):
    policy = iam.airflow_policy(CFG, TARGET, teardown=False)
    assert violations(code_without_teardown.calls, policy) == []
    teardown_only = _operations(code) - _operations(code_without_teardown)
    assert {("s3", "DeleteBucket"), ("kinesis", "DeleteStream"), ("glue", "DeleteDatabase")} <= teardown_only
    for operation in sorted(teardown_only):
        calls = {c for c in code.calls if (c.service, c.operation) == operation}
        assert violations(calls, policy), f"{operation} is only teardown's, yet --no-teardown allows it"


def test_the_policy_grants_nothing_the_code_does_not_call(code, airflow, s3_requests):
    needed = {a for c in code.calls for a in iam_actions(c.service, c.operation)}
    needed |= {action for c in code.calls for action, _, _ in IMPLIED.get((c.service, c.operation), ())}
    needed |= {action for action, _, _ in s3_requests}
    granted = {a for s in airflow["Statement"] for a in _listed(s["Action"])}
    assert granted - needed == set(), "granted but never called"


def test_no_action_wildcards_and_no_unscoped_resources():
    for role in iam.ROLES:
        policy = iam.policy(role, CFG, TARGET)
        for statement in policy["Statement"]:
            for action in _listed(statement["Action"]):
                assert "*" not in action and "?" not in action, f"{role}: wildcard action {action}"
            resources = _listed(statement["Resource"])
            if "*" in resources:
                assert resources == ["*"], f"{role}: {statement['Sid']} mixes '*' with ARNs"
                extra = set(_listed(statement["Action"])) - set(iam.RESOURCE_WILDCARD_ACTIONS)
                assert not extra, f"{role}: {statement['Sid']} grants {extra} on '*'"
                continue
            for arn in resources:
                _, partition, service, region, account, name = arn.split(":", 5)
                assert partition == "aws"
                if service == "s3":
                    assert name.split("/")[0] in (CFG.bucket, CFG.artifacts_bucket), arn
                else:
                    assert account == ACCOUNT and region in (REGION, ""), arn
                    assert name and not name.startswith("*"), f"{role}: unscoped {arn}"


def test_resource_wildcard_exceptions_are_exactly_the_statements_using_them():
    starred = {
        a
        for role in iam.ROLES
        for s in iam.policy(role, CFG, TARGET)["Statement"]
        if s["Resource"] == "*"
        for a in _listed(s["Action"])
    }
    assert starred == set(iam.RESOURCE_WILDCARD_ACTIONS)


# ----------------------------------------------------------------------------------------- the scan fails closed
SYNTHETIC = """
from include.aws import client


class Cleaner:
    def __init__(self, queue_client):
        self.queue = queue_client

    def purge(self, url):
        self.queue.purge_queue(QueueUrl=url)  # through self.<attr>


def drop_everything(glue):
    for page in glue.get_paginator("get_databases").paginate():  # a paginator, client passed in
        pass


def run(mystery):
    Cleaner(client("sqs")).purge("https://sqs/q")
    drop_everything(client("glue"))
    client("s3").put_bucket_policy(Bucket="b", Policy="{}")
    mystery.delete_table(DatabaseName="d", Name="t")  # nobody can tell which client this is
"""


def test_a_new_call_the_policy_does_not_allow_fails_the_check(tmp_path, airflow):
    package = tmp_path / "synthetic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cleanup.py").write_text(SYNTHETIC)
    result = scan({**ROOTS, "synthetic": package})
    new = {c for c in result.calls if "cleanup.py" in c.where}
    assert {(c.service, c.operation) for c in new} == {
        ("sqs", "PurgeQueue"),
        ("glue", "GetDatabases"),
        ("s3", "PutBucketPolicy"),
    }
    problems = violations(new, airflow)
    assert [p.split(" on ")[0] for p in problems] == [
        "glue:GetDatabases",
        "s3:PutBucketPolicy",
        "sqs:PurgeQueue",
    ]
    unresolved = [u for u in result.unresolved if "cleanup.py" in u]
    assert len(unresolved) == 1 and "mystery.delete_table" in unresolved[0]


# ----------------------------------------------------------------------------------------- S3, request by request
def _s3_requests(operation: str, params: dict) -> list[tuple[str, str]]:
    """(IAM action, ARN) of one S3 request, from its actual parameters (keys, version ids, copy source)."""
    bucket = params.get("Bucket")
    if operation == "DeleteObjects":
        return [
            (
                "s3:DeleteObjectVersion" if o.get("VersionId") else "s3:DeleteObject",
                f"arn:aws:s3:::{bucket}/{o['Key']}",
            )
            for o in params["Delete"]["Objects"]
        ]
    out = []
    for action in S3_ACTIONS.get(operation, (f"s3:{operation}",)):
        if "Bucket" in action:
            out.append((action, f"arn:aws:s3:::{bucket}"))
        elif action == "s3:GetObject" and "CopySource" in params:
            source = params["CopySource"]
            if isinstance(source, str):
                source_bucket, _, source_key = source.lstrip("/").partition("/")
            else:
                source_bucket, source_key = source["Bucket"], source["Key"]
            out.append((action, f"arn:aws:s3:::{source_bucket}/{source_key}"))
        else:
            if params.get("VersionId") and action in ("s3:GetObject", "s3:DeleteObject"):
                action += "Version"
            out.append((action, f"arn:aws:s3:::{bucket}/{params['Key']}"))
    return out


@pytest.fixture(scope="module")
def s3_requests(tmp_path_factory) -> list[tuple[str, str, str]]:
    """Run the S3 parts of setup, compaction (with a rerun and a late object), the Flink code upload and the
    teardown against moto; return (action, ARN, phase) of every request they made."""
    from include.compaction.compactor import compact_hour
    from include.compaction.manifest import find_late_objects, hour_is_compacted
    from include.flink_app.package import upload
    from include.provision import ensure_bucket
    from include.provision.teardown import empty_and_delete_bucket
    from tests.compaction.helpers import event, put_errors, put_raw

    recorded: list[tuple[str, str, str]] = []
    phase = {"name": "setup"}

    def record(params, model, **_):
        for action, arn in _s3_requests(model.name, params):
            recorded.append((action, arn, phase["name"]))

    hour = datetime(2026, 11, 27, 10, tzinfo=UTC)
    code_zip = tmp_path_factory.mktemp("flink") / "app.zip"
    with zipfile.ZipFile(code_zip, "w") as archive:
        archive.writestr("main.py", "print('hello')\n")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        seed = boto3.client("s3", region_name="us-east-1")  # plays Firehose and Flink; not recorded
        s3.meta.events.register("before-parameter-build.s3", record)
        ensure_bucket(s3, CFG.bucket, "us-east-1")
        ensure_bucket(s3, CFG.artifacts_bucket, "us-east-1")
        phase["name"] = "compaction"
        put_raw(seed, hour, [event(hour, offset_ms=i, user_id=i % 3 + 1) for i in range(20)] + [b"junk"])
        put_errors(seed, hour, [b"oops"])
        compact_hour(s3, CFG.bucket, hour, settings=CFG, now=hour + timedelta(hours=2), code_version="iam-1")
        put_raw(seed, hour, [event(hour, offset_ms=99)], arrival="55-00", suffix="late")
        assert find_late_objects(s3, CFG.bucket, hour, settings=CFG)
        compact_hour(s3, CFG.bucket, hour, settings=CFG, now=hour + timedelta(hours=3), code_version="iam-2")
        assert hour_is_compacted(s3, CFG.bucket, hour, settings=CFG)
        phase["name"] = "setup"
        upload(s3, CFG.artifacts_bucket, CFG.flink_code_key, code_zip)
        seed.put_object(Bucket=CFG.bucket, Key=f"{CFG.streaming_prefix}sessions/part-0.json", Body=b"{}")
        seed.create_multipart_upload(Bucket=CFG.bucket, Key=f"{CFG.streaming_prefix}sessions/part-1.json")
        phase["name"] = "teardown"
        empty_and_delete_bucket(s3, CFG.artifacts_bucket)
        empty_and_delete_bucket(s3, CFG.bucket)
    return recorded


def test_every_s3_request_is_allowed_on_its_key(s3_requests, airflow):
    kinds = Counter(action for action, _, _ in s3_requests)
    # the scenario exercised what it is for: staged uploads, copies, rerun cleanup, version deletes, aborts
    for action in (
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:ListBucket",
    ):
        assert kinds[action] > 0, f"the scenario made no {action} request: {dict(kinds)}"
    assert any(a == "s3:AbortMultipartUpload" for a, _, p in s3_requests if p == "teardown")
    denied = sorted({(a, arn) for a, arn, _ in s3_requests if not allowed(airflow, a, arn)})
    assert denied == []


def test_no_teardown_policy_allows_the_runs_and_denies_emptying_the_lake(s3_requests):
    policy = iam.airflow_policy(CFG, TARGET, teardown=False)
    for action, arn, phase in s3_requests:
        if phase != "teardown":
            assert allowed(policy, action, arn), (action, arn, phase)
    assert not allowed(policy, "s3:DeleteBucket", lake_arn())
    assert not allowed(policy, "s3:DeleteObject", lake_arn("raw/events/x.gz"))
    assert not allowed(policy, "s3:DeleteObjectVersion", lake_arn("compacted/events/x.parquet"))


def test_airflow_cannot_overwrite_what_the_services_write(airflow):
    policy = iam.airflow_policy(CFG, TARGET, teardown=False)
    for key in ("raw/events/event_date=2026-01-01/event_hour=00/x.gz", "streaming/sessions/part-0.json"):
        assert allowed(policy, "s3:GetObject", lake_arn(key))
        assert not allowed(policy, "s3:PutObject", lake_arn(key))
    assert not allowed(airflow, "s3:GetObject", f"arn:aws:s3:::{CFG.artifacts_bucket}/{CFG.flink_code_key}")
    assert not allowed(airflow, "s3:PutObject", f"arn:aws:s3:::{CFG.artifacts_bucket}/other.zip")


# ----------------------------------------------------------------------------------------- service roles
def _sample_key(prefix_expression: str) -> str:
    """A key Firehose would write under a prefix with ``!{…}`` expressions (each replaced by a value)."""
    return (
        re.sub(r"!\{[^}]*\}", "x1", prefix_expression)
        + "clickstream-raw-delivery-1-2026-01-01-00-00-00-abc.gz"
    )


def test_firehose_role_does_what_the_delivery_stream_is_configured_to_do():
    from include.provision.resources import delivery_destination

    policy = iam.firehose_policy(CFG, TARGET)
    destination = delivery_destination(CFG)
    bucket_arn = destination["BucketARN"]
    for prefix in (destination["Prefix"], destination["ErrorOutputPrefix"]):
        key_arn = f"{bucket_arn}/{_sample_key(prefix)}"
        for action in ("s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"):
            assert allowed(policy, action, key_arn), (action, key_arn)
    for action in ("s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"):
        assert allowed(policy, action, bucket_arn)
    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{CFG.stream_name}"
    for action in (
        "kinesis:DescribeStream",
        "kinesis:GetShardIterator",
        "kinesis:GetRecords",
        "kinesis:ListShards",
    ):
        assert allowed(policy, action, stream)
    assert not allowed(policy, "kinesis:PutRecords", stream)
    assert not allowed(policy, "s3:PutObject", lake_arn("compacted/events/x.parquet"))
    assert not allowed(policy, "s3:PutObject", lake_arn("streaming/sessions/x.json"))


def test_flink_role_does_what_the_application_is_configured_to_do():
    from include.provision.resources import flink_application_configuration

    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{CFG.stream_name}"
    config = flink_application_configuration(CFG, stream, REGION, {"python": "main.py"})
    policy = iam.flink_policy(CFG, TARGET)
    location = config["ApplicationCodeConfiguration"]["CodeContent"]["S3ContentLocation"]
    assert allowed(policy, "s3:GetObject", f"{location['BucketARN']}/{location['FileKey']}")
    groups = {
        g["PropertyGroupId"]: g["PropertyMap"] for g in config["EnvironmentProperties"]["PropertyGroups"]
    }
    source = next(g for g in groups.values() if g.get("connector") == "kinesis")
    for action in (
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
        "kinesis:DescribeStreamSummary",
    ):
        assert allowed(policy, action, source["stream.arn"])
    output = next(g["output.path"] for g in groups.values() if "output.path" in g)
    bucket, _, path = output.removeprefix("s3://").partition("/")
    for sink in ("sessions", "metrics", "late_events"):
        key_arn = f"arn:aws:s3:::{bucket}/{path}/{sink}/part-0-0"
        for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
            assert allowed(policy, action, key_arn), (action, key_arn)
    assert allowed(policy, "s3:ListBucket", f"arn:aws:s3:::{bucket}")
    assert not allowed(policy, "s3:PutObject", lake_arn("raw/events/x.gz"))
    assert not allowed(policy, "s3:PutObject", f"arn:aws:s3:::{CFG.artifacts_bucket}/{CFG.flink_code_key}")
    assert not allowed(policy, "kinesis:PutRecords", stream)


def test_trust_policies_name_the_service_and_this_account_or_resource():
    principals = {
        role: iam.trust_policy(role, CFG, TARGET)["Statement"][0]["Principal"]["Service"]
        for role in iam.ROLES
    }
    assert principals == {
        "airflow": ["airflow-env.amazonaws.com", "airflow.amazonaws.com"],
        "firehose": "firehose.amazonaws.com",
        "flink": "kinesisanalytics.amazonaws.com",
    }
    flink = iam.trust_policy("flink", CFG, TARGET)["Statement"][0]["Condition"]
    assert (
        flink["ArnEquals"]["aws:SourceArn"]
        == f"arn:aws:kinesisanalytics:{REGION}:{ACCOUNT}:application/{CFG.flink_app}"
    )
    assert iam.trust_policy("firehose", CFG, TARGET)["Statement"][0]["Condition"] == {
        "StringEquals": {"sts:ExternalId": ACCOUNT}
    }


# ----------------------------------------------------------------------------------------- CLI and settings
def test_cli_prints_the_policy_for_the_environments_settings(monkeypatch, capsys):
    monkeypatch.setenv("CLICKSTREAM_STREAM", "other-stream")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert iam.main(["--role", "airflow"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert allowed(printed, "kinesis:PutRecords", f"arn:aws:kinesis:us-west-2:{ACCOUNT}:stream/other-stream")
    assert not allowed(
        printed, "kinesis:PutRecords", f"arn:aws:kinesis:us-west-2:{ACCOUNT}:stream/{CFG.stream_name}"
    )
    assert iam.main(["--role", "flink", "--trust", "--region", "eu-west-1"]) == 0
    assert json.loads(capsys.readouterr().out)["Statement"][0]["Action"] == "sts:AssumeRole"


def test_cli_refuses_an_account_that_does_not_own_the_roles(capsys):
    assert iam.main(["--role", "airflow", "--account", "111122223333", "--region", "eu-west-1"]) == 2
    err = capsys.readouterr().err
    assert "CLICKSTREAM_FIREHOSE_ROLE_ARN" in err and "111122223333" in err


def test_cli_needs_a_region(monkeypatch, capsys):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert iam.main(["--role", "firehose"]) == 2
    assert "--region" in capsys.readouterr().err


def test_a_prefix_in_another_owners_area_is_refused():
    with pytest.raises(iam.IamConfigError) as refused:
        iam.lake_areas(Settings(raw_error_prefix="compacted/errors/"))
    message = str(refused.value)
    assert "Settings.raw_error_prefix" in message and "compacted/" in message and "firehose" in message


def test_a_new_layout_prefix_becomes_an_airflow_area():
    areas = iam.lake_areas(CFG)
    assert areas["raw/"] == "firehose" and areas["streaming/"] == "flink"
    assert {a for a, o in areas.items() if o == "airflow"} >= {"compacted/", "quarantine/", "manifests/"}


# ----------------------------------------------------------------------------------------- the runbook
def test_the_runbook_explains_every_environment_variable_and_the_policy_sizes():
    doc = (REPO / "docs" / "deploy-aws.md").read_text()
    read = set()
    for root in ROOTS.values():
        for path in root.rglob("*.py"):
            read |= set(re.findall(r"[\"'](CLICKSTREAM_[A-Z0-9_]+)[\"']", path.read_text()))
    assert read, "no CLICKSTREAM_* variable found: has the config moved?"
    assert sorted(v for v in read if f"`{v}`" not in doc) == []
    counts = {role: len(iam.policy(role, CFG, TARGET)["Statement"]) for role in iam.ROLES}
    no_teardown = len(iam.airflow_policy(CFG, TARGET, teardown=False)["Statement"])
    assert f"| `airflow` | {counts['airflow']} ({no_teardown} with `--no-teardown`) |" in doc
    assert f"| `firehose` | {counts['firehose']} |" in doc and f"| `flink` | {counts['flink']} |" in doc
