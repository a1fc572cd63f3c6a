"""Producer fault injection and the compaction validator agree on every reason code, variant by variant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from include.compaction.validation import RecordValidator, Rejection
from tests.compaction.helpers import event

malformed = pytest.importorskip("include.producer.malformed")

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
#: Enough draws to hit every variant of every kind (the producer picks a variant by slicing [0, 1)).
DRAWS = [i / 40 for i in range(40)]


@pytest.mark.parametrize("kind", sorted(malformed.BUILDERS))
def test_every_variant_is_quarantined_with_the_tagged_reason(kind):
    validator = RecordValidator(HOUR, NOW, timedelta(minutes=5))
    any_hour = RecordValidator(None, NOW, timedelta(minutes=5))  # what error-prefix records are checked with
    base = event(HOUR, offset_ms=1_234_567, user_id=4242, device_id="tablet", client_event="view_cart")
    canonical = malformed.dumps(base)
    assert validator.validate(canonical)[0] == base["event_id"]
    seen = set()
    for u in DRAWS:
        data, _ = malformed.build(kind, base, canonical, u)
        seen.add(data)
        for v in (validator, any_hour):
            result = v.validate(data)
            assert isinstance(result, Rejection), f"{kind} variant {data!r} passed validation"
            assert result.reason == kind, f"{kind} variant {data!r} got {result.reason}: {result.detail}"
    assert len(seen) > 1  # several variants were exercised
