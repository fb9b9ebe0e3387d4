"""A real S3-API server for tests: moto's server mode in a subprocess on 127.0.0.1.

Tests talk to it over HTTP exactly as to AWS or MinIO, through s3fs and botocore, with
credentials and the endpoint in the environment (`S3Server.env`). The environment also points
botocore's config and credential files at paths that do not exist and turns off the EC2
metadata service, so no test reads a developer's ~/.aws or waits on 169.254.169.254.

Fixtures: `s3_server` (one server for the session) and `s3_env` (a test's environment set to
it, every other AWS_* variable removed). tests/conftest.py imports both. `start_s3_server` is
for a test that needs a server of its own (auth switched on, say).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from runhelpers import wait_for
from servehelpers import answers, free_port, stop

TEST_KEY = "testing"
TEST_REGION = "us-east-1"


@dataclass
class S3Server:
    """A running moto server: its endpoint, the environment that reaches it, a boto3 client."""

    endpoint: str
    env: dict[str, str]
    process: subprocess.Popen
    log: Path
    _client: Any = field(default=None, repr=False)

    def client(self) -> Any:
        """A boto3 S3 client with the test credentials (made once)."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=TEST_KEY,
                aws_secret_access_key=TEST_KEY,
                region_name=TEST_REGION,
            )
        return self._client

    def make_bucket(self, bucket: str) -> None:
        """Create `bucket` unless it exists."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)

    def upload_tree(self, local_dir: Path, bucket: str, prefix: str = "") -> str:
        """Copy every file below `local_dir` to s3://bucket/prefix/..., keeping relative paths
        (the bucket is created if needed); returns that URL."""
        self.make_bucket(bucket)
        prefix = prefix.strip("/")
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                key = "/".join(p for p in (prefix, path.relative_to(local_dir).as_posix()) if p)
                self.client().put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        return f"s3://{bucket}/{prefix}".rstrip("/")

    def put(self, url: str, body: bytes) -> None:
        """Write one object at s3://bucket/key."""
        bucket, key = url.removeprefix("s3://").split("/", 1)
        self.make_bucket(bucket)
        self.client().put_object(Bucket=bucket, Key=key, Body=body)

    def create_user(self, name: str, buckets: list[str]) -> tuple[str, str]:
        """An IAM user allowed s3:* on `buckets` only; its (access key id, secret). Needed only
        once auth is required (`require_auth`); before that moto accepts any key."""
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            aws_access_key_id=TEST_KEY,
            aws_secret_access_key=TEST_KEY,
            region_name=TEST_REGION,
        )
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        resources = [f"arn:aws:s3:::{b}{tail}" for b in buckets for tail in ("", "/*")]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": resources}],
        }
        iam.put_user_policy(UserName=name, PolicyName="buckets", PolicyDocument=json.dumps(policy))
        return key["AccessKeyId"], key["SecretAccessKey"]

    def require_auth(self) -> None:
        """From now on the server checks signatures and IAM policies, as AWS does (moto's
        /moto-api/reset-auth: the count of requests still let through unchecked, here 0)."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


def clean_environ(env: dict[str, str], base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: os.environ) without any AWS_* variable, plus `env`: what a subprocess
    that should reach the test server (and nothing else) gets."""
    base = dict(os.environ if base is None else base)
    return {**{k: v for k, v in base.items() if not k.startswith("AWS_")}, **env}


def start_s3_server(folder: Path) -> S3Server:
    """Start `python -m moto.server` on a free loopback port and wait until it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = folder / "moto.log"
    with open(log, "w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=clean_environ({}),
        )
    env = {
        "AWS_ACCESS_KEY_ID": TEST_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_KEY,
        "AWS_DEFAULT_REGION": TEST_REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        wait_for(lambda: answers(f"{endpoint}/"), process, 60, "moto answered", log)
    except BaseException:
        stop(process)
        raise
    return S3Server(endpoint, env, process, log)


@contextlib.contextmanager
def running_s3_server(folder: Path) -> Iterator[S3Server]:
    """A moto server for the duration of the block."""
    server = start_s3_server(folder)
    try:
        yield server
    finally:
        stop(server.process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3-API server for the whole session; tests use their own bucket names."""
    with running_s3_server(tmp_path_factory.mktemp("s3server")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """This test's environment reaches the session's server and no other AWS settings."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server
