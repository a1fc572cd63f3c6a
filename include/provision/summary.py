"""One table of what setup or teardown did to each resource, printed in the task log and returned as XCom."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def summarize(results: Iterable[dict[str, str] | None], label: str) -> dict[str, str]:
    """Merge the per-task ``{resource: outcome}`` dicts, print them one per line with the counts by outcome.

    A ``None`` result (a task that returned nothing) is skipped rather than hiding the others.
    """
    merged: dict[str, str] = {}
    for result in results:
        merged.update(result or {})
    width = max(map(len, merged), default=0)
    for resource, outcome in sorted(merged.items()):
        print(f"{resource:<{width}}  {outcome}")
    print(f"{label}: {dict(sorted(Counter(merged.values()).items()))}")
    return merged
