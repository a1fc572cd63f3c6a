"""``include.provision.resources.if_exists``: the one lookup every ensure_* / delete_* starts with."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from include.provision.resources import MISSING_BUCKET_CODES, MISSING_RESOURCE_CODES, if_exists


def raising(code: str):
    def fetch() -> dict:
        raise ClientError({"Error": {"Code": code, "Message": "m"}}, "DescribeSomething")

    return fetch


def test_the_answer_when_the_resource_exists():
    assert if_exists(lambda: {"StreamStatus": "ACTIVE"}, MISSING_RESOURCE_CODES) == {"StreamStatus": "ACTIVE"}


@pytest.mark.parametrize("code", MISSING_BUCKET_CODES)
def test_none_when_aws_says_it_is_missing(code):
    assert if_exists(raising(code), MISSING_BUCKET_CODES) is None


@pytest.mark.parametrize("code", ["AccessDeniedException", "ThrottlingException", "EntityNotFoundException"])
def test_any_other_error_propagates_so_nothing_is_created_twice(code):
    with pytest.raises(ClientError) as exc:
        if_exists(raising(code), MISSING_RESOURCE_CODES)
    assert exc.value.response["Error"]["Code"] == code
