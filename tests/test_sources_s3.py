"""``hspnet tag s3://bucket/prefix`` through the real s3fs client against moto's standalone S3
server on 127.0.0.1, configured only through the standard AWS environment variables. The server
checks signatures (auth switched on after the set-up calls), so a wrong secret is refused for real."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scaling_helpers import hspnet, read_parts, tiny_model  # noqa: F401 - fixture

N = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(demo_split, tmp_path_factory):
    """A moto S3 server with bucket ``imgs``: ``demo/{a,b}/*.png`` (12 images) and a README."""
    import boto3
    import requests

    server = Path(sys.executable).with_name("moto_server")
    if not server.is_file():
        raise RuntimeError(f"{server} missing: install the test extra (moto[server])")
    port = _free_port()
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.get(url + "/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    setup = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="tagger")
    key = iam.create_access_key(UserName="tagger")["AccessKey"]
    iam.put_user_policy(
        UserName="tagger",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    client = boto3.client("s3", **setup)
    client.create_bucket(Bucket="imgs")
    local = tmp_path_factory.mktemp("s3-local") / "demo"
    for i, p in enumerate(sorted(demo_split["images"].glob("*.png"))[:N]):
        rel = f"{'a' if i % 2 else 'b'}/{p.name}"
        client.upload_file(str(p), "imgs", f"demo/{rel}")
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, local / rel)
    client.put_object(Bucket="imgs", Key="demo/README.txt", Body=b"not an image")
    # From here on every request must be signed with an IAM user's key (moto's auth switch).
    assert (
        requests.post(
            url + "/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}, timeout=5
        ).status_code
        == 200
    )
    env = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }
    yield {"env": env, "local": local, "secret": key["SecretAccessKey"]}
    proc.terminate()
    proc.wait(timeout=10)


def test_prefix_tagged_with_object_url_keys_equal_to_local(s3, tiny_model, tmp_path: Path) -> None:
    r = hspnet(
        "tag",
        "s3://imgs/demo",
        "--checkpoint",
        str(tiny_model),
        "--format",
        "parquet",
        "--out",
        str(tmp_path / "pq"),
        "--block-size",
        "5",
        "--device",
        "cpu",
        "--workers",
        "2",
        "--json",
        env=s3["env"],
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["rows"], summary["failed"], summary["skipped"]) == (N, 0, {".txt": 1})
    got = read_parts(tmp_path / "pq")
    local = hspnet(
        "tag",
        str(s3["local"]),
        "--checkpoint",
        str(tiny_model),
        "--format",
        "parquet",
        "--out",
        str(tmp_path / "local"),
        "--device",
        "cpu",
        "--workers",
        "0",
    )
    assert local.returncode == 0, local.stderr
    want = read_parts(tmp_path / "local")
    assert sorted(got) == sorted(f"s3://imgs/demo/{k}" for k in want)
    for k, probs in want.items():
        np.testing.assert_allclose(got[f"s3://imgs/demo/{k}"], probs, atol=1e-6)
    # The hits of an index over it are fetched from the bucket by search --copy-to.
    assert hspnet("index", "build", str(tmp_path / "pq"), "--out", str(tmp_path / "i.faiss")).returncode == 0
    found = hspnet(
        "search",
        str(tmp_path / "i.faiss"),
        "--like",
        "a/" + sorted(want)[0].split("/")[1],
        "--k",
        "2",
        "--copy-to",
        str(tmp_path / "hits"),
        env=s3["env"],
    )
    assert found.returncode == 0, found.stderr
    assert len(list((tmp_path / "hits").iterdir())) == 2
    # Labeling tools need local files: refused without --images, fine with a synced copy.
    refused = hspnet("export-labels", str(tmp_path / "pq"), "--to", "cvat", "--out", str(tmp_path / "cvat.xml"))
    assert refused.returncode == 2 and "--images FOLDER" in refused.stderr and "s3://imgs/demo" in refused.stderr
    synced = hspnet(
        "export-labels",
        str(tmp_path / "pq"),
        "--to",
        "cvat",
        "--out",
        str(tmp_path / "cvat.xml"),
        "--images",
        str(s3["local"]),
    )
    assert synced.returncode == 0, synced.stderr
    for text in (r.stdout, r.stderr, found.stdout, found.stderr, (tmp_path / "pq" / "_manifest.json").read_text()):
        assert s3["secret"] not in text


@pytest.mark.parametrize("case", ["wrong secret", "missing bucket", "missing prefix", "secret in --storage-options"])
def test_storage_errors_are_one_line_naming_the_url_and_write_nothing(case, s3, tiny_model, tmp_path: Path) -> None:
    env, url, extra = dict(s3["env"]), "s3://imgs/demo", []
    wrong = "WRONGsecretWRONGsecret0123456789"
    if case == "wrong secret":
        env["AWS_SECRET_ACCESS_KEY"] = wrong
    elif case == "missing bucket":
        url = "s3://no-such-bucket/demo"
    elif case == "missing prefix":
        url = "s3://imgs/not-there"
    else:
        extra = ["--storage-options", json.dumps({"key": env["AWS_ACCESS_KEY_ID"], "secret": wrong})]
    out = tmp_path / "out"
    r = hspnet(
        "tag",
        url,
        "--checkpoint",
        str(tiny_model),
        "--format",
        "parquet",
        "--out",
        str(out),
        "--device",
        "cpu",
        *extra,
        env=env,
    )
    lines = [
        line
        for line in r.stderr.splitlines()
        if line.strip() and "randomly initialised" not in line and "meaningless until trained" not in line
    ]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {url}: "), r.stderr
    assert ("access denied" in lines[0]) == (case in ("wrong secret", "secret in --storage-options"))
    assert wrong not in r.stderr + r.stdout and s3["secret"] not in r.stderr + r.stdout
    assert sorted(os.listdir(tmp_path)) == []
