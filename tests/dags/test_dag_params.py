"""Every DAG's params come from one typed source in include/, so the UI's trigger form, the CLI's ``--conf`` and
the code cannot disagree: same keys, defaults, bounds, enums and help; the same values accepted and refused.
"""

from __future__ import annotations

import math

import pytest

from include.compaction.params import CompactionParams
from include.dag_params import param_specs
from include.flink_lifecycle import LifecycleParams
from include.producer.params import ProducerParams
from include.provision.teardown import TeardownParams
from include.reconciliation.params import ReconcileParams
from localdev.airflow_env import REPO

#: The typed source of each DAG's params. A DAG with params that is not listed here fails
#: test_every_dag_param_matches_its_typed_source: declare its params with include.dag_params.param() and list it.
TYPED_SOURCES: dict[str, type] = {
    "clickstream_compaction": CompactionParams,
    "clickstream_producer": ProducerParams,
    "clickstream_flink_lifecycle": LifecycleParams,
    "clickstream_teardown": TeardownParams,
    "clickstream_reconciliation": ReconcileParams,
}


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags


def test_every_dag_param_matches_its_typed_source(dags):
    problems = []
    for dag_id, dag in sorted(dags.items()):
        source = TYPED_SOURCES.get(dag_id)
        if source is None:
            if dag.params:
                problems.append(
                    f"{dag_id} has params {sorted(dag.params)} but no typed source: declare them on a dataclass "
                    "with include.dag_params.param(), build the DAG's params with airflow_params(), and add the "
                    "class to TYPED_SOURCES in tests/dags/test_dag_params.py"
                )
            continue
        specs = param_specs(source)
        if list(dag.params) != list(specs):
            problems.append(f"{dag_id}: params {list(dag.params)} vs {source.__name__} fields {list(specs)}")
            continue
        for name, spec in specs.items():
            param = dag.params.get_param(name)
            if param.value != spec.default:
                problems.append(f"{dag_id}.{name}: default {param.value!r} vs {spec.default!r}")
            if param.schema != spec.schema():
                problems.append(f"{dag_id}.{name}: schema {param.schema} vs {spec.schema()}")
            if param.description != spec.description or not spec.description:
                problems.append(f"{dag_id}.{name}: description {param.description!r} vs {spec.description!r}")
    assert problems == []


@pytest.mark.parametrize("dag_id", sorted(TYPED_SOURCES))
def test_the_forms_defaults_are_the_codes_defaults(dags, dag_id):
    """A trigger that changes nothing in the form runs with exactly the code's defaults, and they validate."""
    source = TYPED_SOURCES[dag_id]
    form = {name: dags[dag_id].params.get_param(name).resolve() for name in dags[dag_id].params}
    assert source.from_dict(form) == source()


def _probes(spec) -> list:
    """Values at, just inside and just outside each bound, plus values of the wrong type."""
    values: list = [None, "1", [], {}]
    if spec.type in ("integer", "number"):
        step = 1 if spec.type == "integer" else 1e-6
        for bound in (spec.minimum, spec.maximum, spec.exclusive_minimum, spec.exclusive_maximum):
            if bound is not None:
                values += [bound - step, bound, bound + step]
        values += [True, math.inf] + ([2.5] if spec.type == "integer" else [7])
    if spec.type == "boolean":
        values += [True, False, 0, "true"]
    if spec.enum is not None:
        values += list(spec.enum) + [str(spec.enum[0]).upper() + "x"]
    if spec.type == "string":
        values += ["", "x", 3]
    if spec.type == "array":
        items = list(spec.items_enum or ())
        values += [items[:1], items, items[:1] * 2, ["not-a-known-value"], [1], "x"]
    return values


@pytest.mark.parametrize("source", sorted(set(TYPED_SOURCES.values()), key=lambda c: c.__name__))
def test_form_and_code_accept_and_refuse_the_same_values(source):
    """Airflow validates a trigger with jsonschema against the Param's schema; the code checks the field with
    its own rules. Both come from the declaration, and they must agree value by value."""
    from airflow.sdk import Param
    from airflow.sdk.exceptions import ParamValidationError

    checked = 0
    for name, spec in param_specs(source).items():
        form = Param(spec.default, description=spec.description, **spec.schema())
        for value in _probes(spec):
            if value is math.inf:
                continue  # not JSON: the form cannot send it (the code refuses it, see tests/producer)
            try:
                form.resolve(value)
                form_ok = True
            except ParamValidationError:
                form_ok = False
            try:
                spec.check(value)
                code_ok = True
            except ValueError as exc:
                code_ok = False
                assert str(exc).startswith(f"{name} "), exc  # the message names the field
            assert form_ok == code_ok, f"{source.__name__}.{name}={value!r}: form {form_ok}, code {code_ok}"
            checked += 1
    assert checked >= 5 * len(param_specs(source))


def test_the_rate_per_user_rule_spans_fields_and_is_checked_by_the_code():
    """JSON schema cannot bound events_per_second by users: each value passes the form, the code refuses."""
    from airflow.sdk import Param

    specs = param_specs(ProducerParams)
    conf = {"users": 100, "events_per_second": 5.0}
    for name, value in conf.items():
        Param(specs[name].default, **specs[name].schema()).resolve(value)  # accepted by the form
    with pytest.raises(ValueError, match="events_per_second=5.0 is too high for users=100"):
        ProducerParams.from_dict(conf)
    assert ProducerParams.from_dict({"users": 500, "events_per_second": 5.0}).events_per_second == 5.0


def test_a_trigger_breaking_the_rate_rule_fails_before_anything_is_sent(airflow_db):
    """The DAG-level path: validate_params fails at once (no retry), produce never runs."""
    from localdev.airflow_env import run_dag, task_states

    run = run_dag("clickstream_producer", conf={"users": 100, "events_per_second": 5.0})
    states = task_states(run)
    assert run.state == "failed", states
    assert states == {"validate_params": "failed", "produce": "upstream_failed"}


def test_teardown_refuses_a_wrong_confirmation_before_deleting_anything(airflow_db):
    """No deletion may run unconfirmed, not even the all_done ones: the confirmation is a setup task."""
    from localdev.airflow_env import run_dag, task_states

    run = run_dag("clickstream_teardown", conf={"confirm": "not-the-bucket"})
    states = task_states(run)
    assert run.state == "failed", states
    assert states.pop("check_confirmation") == "failed"
    assert set(states.values()) == {"upstream_failed"}, states
    assert {"delete_buckets", "delete_stream", "watcher", "summary"} <= set(states)


def test_teardown_wiring_is_best_effort_behind_the_confirmation(dags):
    dag = dags["clickstream_teardown"]
    confirm = dag.get_task("check_confirmation")
    assert confirm.is_setup
    deletions = [t for t in dag.tasks if t.task_id.startswith("delete_")]
    assert {t.task_id for t in deletions} == {
        "delete_flink_app",
        "delete_delivery_stream",
        "delete_stream",
        "delete_alerting",
        "delete_catalog",
        "delete_buckets",
    }
    for task_id in ("delete_stream", "delete_buckets"):
        task = dag.get_task(task_id)
        assert task.trigger_rule == "all_done"
        assert {"delete_flink_app", "delete_delivery_stream"} <= task.upstream_task_ids
    watcher = dag.get_task("watcher")
    assert watcher.trigger_rule == "one_failed"
    assert watcher.upstream_task_ids == {t.task_id for t in dag.tasks} - {"watcher", "check_confirmation"}
