"""The simulated users: stable per-user profiles and a skewed but O(1) way to pick who starts a session.

Profiles are a pure function of (seed, user_id), so a user keeps the same country and devices whatever the
interval, and growing the population leaves existing users unchanged.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from functools import lru_cache
from itertools import accumulate
from typing import NamedTuple

from include.events_schema import COUNTRY_CODES, DEVICE_IDS

_MASK64 = (1 << 64) - 1

#: Where a beer shop's customers live: a realistic weighted subset of ISO 3166-1 alpha-2 codes.
COUNTRY_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("US", 18),
    ("DE", 14),
    ("GB", 10),
    ("IE", 6),
    ("BE", 6),
    ("CZ", 5),
    ("NL", 5),
    ("FR", 5),
    ("PL", 4),
    ("CA", 4),
    ("AT", 3),
    ("AU", 3),
    ("ES", 3),
    ("IT", 3),
    ("SE", 2),
    ("DK", 2),
    ("CH", 2),
    ("JP", 2),
    ("BR", 2),
    ("IN", 1),
    ("MX", 1),
)
assert all(code in COUNTRY_CODES for code, _ in COUNTRY_WEIGHTS)
_COUNTRIES = tuple(code for code, _ in COUNTRY_WEIGHTS)
_COUNTRY_CUM = tuple(accumulate(w for _, w in COUNTRY_WEIGHTS))

#: Primary device shares; a second or third device is drawn from the remaining ones.
_DEVICE_WEIGHTS = {"mobile": 0.55, "computer": 0.35, "tablet": 0.10}
assert set(_DEVICE_WEIGHTS) == set(DEVICE_IDS)
#: Share of users with 1, 2 or 3 devices (cumulative).
_DEVICE_COUNT_CUM = (0.70, 0.92, 1.0)

BEERS: tuple[str, ...] = ("belgian", "german", "irish", "czech")
_HOME_BEER = {"BE": "belgian", "DE": "german", "AT": "german", "IE": "irish", "CZ": "czech"}

#: A tenth of the users starts a quarter of the sessions (about 2.5 times the average activity).
HEAVY_USER_SHARE = 0.10
HEAVY_SESSION_SHARE = 0.25


def splitmix64(x: int) -> int:
    """A fast, well-mixed 64-bit hash: stable across platforms and Python versions, unlike hash()."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive(*parts: object) -> int:
    """A 64-bit seed from any labelled parts, e.g. derive(seed, "slot", 42)."""
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def unit(h: int) -> float:
    """The top 53 bits of a 64-bit hash as a float in [0, 1)."""
    return (h >> 11) * (1.0 / (1 << 53))


class UserProfile(NamedTuple):
    user_id: int
    countrycode: str
    #: 1..3 distinct devices, primary first.
    devices: tuple[str, ...]
    #: Cumulative weights over :data:`BEERS`; the home country's beer is three times as likely.
    beer_cum: tuple[float, ...]


class Population:
    """``users`` users with ids 1..users; who is active is skewed, and spread over ids by a bijection."""

    def __init__(self, seed: int, users: int) -> None:
        self.seed = seed
        self.users = users
        self._profile_key = derive(seed, "profile")
        self._heavy = max(1, int(users * HEAVY_USER_SHARE))
        # index -> id by an affine bijection mod users, so the heavy tier is not simply the lowest ids.
        mult = derive(seed, "perm-a") % users or 1
        while math.gcd(mult, users) != 1:
            mult += 1
        self._mult = mult
        self._offset = derive(seed, "perm-b") % users
        self.profile = lru_cache(maxsize=200_000)(self._profile)

    def candidate(self, session_seed: int, attempt: int) -> int:
        """The ``attempt``-th user a session tries (the next one is tried when a user is busy)."""
        h = splitmix64(session_seed + attempt * 0xD1B54A32D192ED03)
        tier = (h & 0xFFFF) / 65536.0
        u = unit(splitmix64(h))
        index = int(u * self._heavy) if tier < HEAVY_SESSION_SHARE else int(u * self.users)
        return (index * self._mult + self._offset) % self.users + 1

    def _profile(self, user_id: int) -> UserProfile:
        h = splitmix64(self._profile_key ^ user_id)
        country = _COUNTRIES[bisect_right(_COUNTRY_CUM, unit(h) * _COUNTRY_CUM[-1])]
        h = splitmix64(h)
        n_devices = 1 + bisect_right(_DEVICE_COUNT_CUM, unit(h))
        devices: list[str] = []
        remaining = dict(_DEVICE_WEIGHTS)
        for _ in range(n_devices):
            h = splitmix64(h)
            target = unit(h) * sum(remaining.values())
            acc = 0.0
            chosen = next(iter(remaining))
            for name, weight in remaining.items():
                acc += weight
                chosen = name
                if target < acc:
                    break
            devices.append(chosen)
            del remaining[chosen]
        home = _HOME_BEER.get(country)
        beer_cum = tuple(accumulate(3.0 if beer == home else 1.0 for beer in BEERS))
        return UserProfile(user_id, country, tuple(devices), beer_cum)
