"""EC2 request throttling (token buckets on the virtual clock) and the concurrent-AMI-copy limit."""
from functools import cache

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from automation.sandbox import DEFAULT_REGION, SOURCE_ACCOUNT, SandboxSettings
from automation.sandbox.settings import ThrottleSettings
from automation.sandbox.throttling import Throttling

OTHER_ACCOUNT = "222222222222"
ONE_ATTEMPT = Config(retries={"total_max_attempts": 1})  # a throttle surfaces at once, with no real sleep
LONG_ENOUGH_FOR_ANY_IMAGE_S = 6 * 3600


@cache
def shared_botocore_session():
    """One session for the whole file: it parses EC2's service model once, not once per client."""
    return botocore.session.get_session()


def ec2(sandbox, account=SOURCE_ACCOUNT, region=DEFAULT_REGION, config=ONE_ATTEMPT):
    return shared_botocore_session().create_client(
        "ec2", region_name=region, endpoint_url=sandbox.endpoint_url, config=config, **sandbox.credentials(account))


def throttling(**settings) -> SandboxSettings:
    return SandboxSettings(throttling=ThrottleSettings(**settings))


def error_of(call, **params) -> dict:
    with pytest.raises(ClientError) as raised:
        call(**params)
    return raised.value.response


def assert_throttled(call, **params) -> None:
    response = error_of(call, **params)
    assert response["Error"] == {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503


def owned_images(client):
    return client.describe_images(Owners=["self"])


# request rate limiting --------------------------------------------------------------------

def test_an_empty_bucket_throttles_until_the_clock_refills_it(make_sandbox):
    sandbox = make_sandbox(throttling(overrides={"DescribeImages": (3, 1)}))
    client = ec2(sandbox)
    for _ in range(3):
        owned_images(client)
    assert_throttled(owned_images, client=client)

    sandbox.clock.advance(1)  # one token back
    owned_images(client)
    assert_throttled(owned_images, client=client)

    sandbox.clock.advance(60)  # refills to the burst, never past it
    for _ in range(3):
        owned_images(client)
    assert_throttled(owned_images, client=client)
    assert sandbox.extension(Throttling).throttled == {"DescribeImages": 3}


def test_buckets_are_per_account_region_and_operation(make_sandbox):
    sandbox = make_sandbox(throttling(overrides={"DescribeImages": (1, 1)}))
    source = ec2(sandbox)
    owned_images(source)
    assert_throttled(owned_images, client=source)

    owned_images(ec2(sandbox, account=OTHER_ACCOUNT))
    owned_images(ec2(sandbox, region="us-west-2"))
    source.describe_regions()  # another operation, another bucket


def test_scale_applies_to_the_documented_buckets(make_sandbox):
    # CopyImage is 100 tokens, 1 a second: scaled by 0.03, 3 tokens and one back every 33.3 s.
    sandbox = make_sandbox(throttling(scale=0.03))
    client = ec2(sandbox)
    copy = dict(Name="copy", SourceImageId="ami-00000000000000000", SourceRegion=DEFAULT_REGION)
    for _ in range(3):  # a request AWS accepts and then fails still takes its token
        assert error_of(client.copy_image, **copy)["Error"]["Code"] == "InvalidAMIID.NotFound"
    assert_throttled(client.copy_image, **copy)

    sandbox.clock.advance(30)
    assert_throttled(client.copy_image, **copy)
    sandbox.clock.advance(4)
    assert error_of(client.copy_image, **copy)["Error"]["Code"] == "InvalidAMIID.NotFound"


def test_unfiltered_unpaginated_describes_draw_from_a_smaller_bucket(make_sandbox):
    # scaled by 0.1: DescribeVolumes has 10 tokens, and 5 when called with neither filter nor pagination
    sandbox = make_sandbox(throttling(scale=0.1))
    client = ec2(sandbox)
    for _ in range(5):
        client.describe_volumes()
    assert_throttled(client.describe_volumes)

    in_use = [{"Name": "status", "Values": ["in-use"]}]
    for _ in range(9):
        client.describe_volumes(Filters=in_use)
    client.describe_volumes(MaxResults=5)  # pagination draws from the same, standard bucket
    assert_throttled(client.describe_volumes, Filters=in_use)
    assert_throttled(client.describe_volumes, MaxResults=5)


def test_overrides_and_the_switch_apply_at_run_time(sandbox):
    client = ec2(sandbox)
    owned_images(client)
    owned_images(client)

    sandbox.settings.throttling.overrides["DescribeImages"] = (1, 0.5)  # the bucket now holds at most 1
    owned_images(client)
    assert_throttled(owned_images, client=client)

    sandbox.settings.throttling.enabled = False
    for _ in range(3):
        owned_images(client)
    sandbox.settings.throttling.enabled = True
    assert_throttled(owned_images, client=client)  # calls made while off took no tokens, and none came back
    sandbox.clock.advance(2)
    owned_images(client)


def test_botocore_retries_a_throttle_and_succeeds_once_a_token_is_back(make_sandbox):
    sandbox = make_sandbox(throttling(overrides={"DescribeImages": (1, 1)}))
    client = ec2(sandbox, config=Config(retries={"mode": "standard", "total_max_attempts": 2}))

    def backoff_passes_on_the_virtual_clock(response, **_):
        if response and response[1].get("Error", {}).get("Code") == "RequestLimitExceeded":
            sandbox.clock.advance(1)

    client.meta.events.register("needs-retry.ec2.DescribeImages", backoff_passes_on_the_virtual_clock)
    owned_images(client)
    answer = owned_images(client)

    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert sandbox.api_calls["ec2:DescribeImages"] == 3
    assert sandbox.extension(Throttling).throttled["DescribeImages"] == 1


# concurrent AMI copies --------------------------------------------------------------------

def available_image(sandbox, client) -> str:
    instance = client.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]
    image_id = client.create_image(InstanceId=instance["InstanceId"], Name="source", NoReboot=True)["ImageId"]
    sandbox.clock.advance(LONG_ENOUGH_FOR_ANY_IMAGE_S)
    assert client.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available"
    return image_id


def copy_with_token(client, image_id: str, token: str) -> dict:
    return client.copy_image(Name=f"copy-{token}", SourceImageId=image_id, SourceRegion=DEFAULT_REGION,
                             ClientToken=token)


def test_copies_beyond_the_limit_are_refused_until_one_finishes(make_sandbox):
    sandbox = make_sandbox(throttling(copy_concurrency_limit=2))
    client = ec2(sandbox)
    image_id = available_image(sandbox, client)
    first = copy_with_token(client, image_id, "first")["ImageId"]
    copy_with_token(client, image_id, "second")

    refused = error_of(copy_with_token, client=client, image_id=image_id, token="third")
    assert refused["Error"]["Code"] == "ResourceLimitExceeded"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert sandbox.extension(Throttling).copies_refused == 1
    assert copy_with_token(client, image_id, "first")["ImageId"] == first  # a retry starts no new copy

    sandbox.clock.advance(LONG_ENOUGH_FOR_ANY_IMAGE_S)
    copy_with_token(client, image_id, "third")


def test_the_copy_limit_can_be_switched_off(make_sandbox):
    sandbox = make_sandbox(throttling(copy_concurrency_limit=1))
    client = ec2(sandbox)
    image_id = available_image(sandbox, client)
    copy_with_token(client, image_id, "first")
    assert error_of(copy_with_token, client=client, image_id=image_id, token="second")["Error"]["Code"] == (
        "ResourceLimitExceeded"
    )

    sandbox.settings.throttling.copy_concurrency_enabled = False
    copy_with_token(client, image_id, "second")
