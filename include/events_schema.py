"""The clickstream event contract shared by the producer, Firehose partitioning, compaction and the sessions.

One module so that what the producer emits, what compaction accepts and what Flink reads cannot drift.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

#: Field order of one event, as written on the wire (JSON object keys).
EVENT_FIELDS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "device_id",
    "client_event",
    "client_timestamp",
    "countrycode",
)

DEVICE_IDS: tuple[str, ...] = ("computer", "mobile", "tablet")

#: The beer shop's events (the seed's Zeppelin charts group by these).
CLIENT_EVENTS: tuple[str, ...] = (
    "login",
    "view_beer_list",
    "view_beer_details",
    "add_belgian_beer",
    "add_german_beer",
    "add_irish_beer",
    "add_czech_beer",
    "remove_beer",
    "view_cart",
    "checkout",
    "payment_succeeded",
    "logout",
)

#: user_id is an INT in Flink, Glue and Athena: keep it positive and within 32 bits.
USER_ID_MIN = 1
USER_ID_MAX = 2_147_483_647

#: Longest accepted client_event (bytes of UTF-8 are not the limit, characters are).
CLIENT_EVENT_MAX_LEN = 64

#: ISO-8601 UTC with exactly three fractional digits and a literal Z, e.g. 2026-11-27T10:15:30.123Z.
CLIENT_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

#: ISO 3166-1 alpha-2, officially assigned codes.
COUNTRY_CODES: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW
    BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI
    FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN
    IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME
    MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF
    PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE
    YT ZA ZM ZW
    """.split()
)


def format_client_timestamp(ts: datetime) -> str:
    """Render an aware datetime as the wire format: UTC, milliseconds, trailing Z."""
    if ts.tzinfo is None:
        raise ValueError(f"client_timestamp must be timezone-aware, got naive {ts!r}")
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_client_timestamp(value: str) -> datetime:
    """Parse the wire format strictly; raise ValueError naming the value otherwise."""
    if not isinstance(value, str) or not CLIENT_TIMESTAMP_RE.match(value):
        raise ValueError(f"client_timestamp {value!r} is not ISO-8601 UTC like 2026-11-27T10:15:30.123Z")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
