"""SOURCE parsing: brace patterns, what kind a SOURCE is, and scrubbing secrets from messages."""

from __future__ import annotations

import pytest

from hspnet_cli.core.errors import UserError
from hspnet_cli.sources import is_plain_folder, parse_storage_options
from hspnet_cli.sources.secrets import scrub, storage_error
from hspnet_cli.sources.spec import expand_braces, is_tar_pattern, is_url, pattern_root, safe_url


def test_brace_ranges_lists_and_products() -> None:
    assert list(expand_braces("s/{000..002}.tar")) == ["s/000.tar", "s/001.tar", "s/002.tar"]
    assert list(expand_braces("s/{8..11}.tar")) == ["s/8.tar", "s/9.tar", "s/10.tar", "s/11.tar"]
    assert list(expand_braces("{a,b}/{0..1}.tar")) == ["a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"]
    assert len(list(expand_braces("shards/{000000..000999}.tar"))) == 1000
    for bad in ("s/{000..002.tar", "s/000}.tar", "s/{x}.tar"):
        with pytest.raises(UserError):
            list(expand_braces(bad))


def test_kinds_and_roots() -> None:
    assert is_tar_pattern("s3://b/shards/{0..9}.tar") and is_url("s3://b/shards/{0..9}.tar")
    assert is_url("file:///data/x") and not is_url("/data/x") and not is_url("C:/x")
    assert is_plain_folder("photos/") and not is_plain_folder("gs://b/p") and not is_plain_folder("a.tar")
    assert pattern_root("data/shards/{000..009}.tar") == "data/shards" and pattern_root("{0..1}.tar") == "."
    assert safe_url("s3://AKIAX:sekrit@bucket/p") == "s3://bucket/p"


def test_secrets_never_in_messages(monkeypatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envSECRETvalue123")
    opts = parse_storage_options('{"key": "AKIAEXAMPLE", "secret": "optSECRETvalue456"}')
    text = scrub("signature for envSECRETvalue123 and optSECRETvalue456 by AKIAEXAMPLE", opts)
    assert "SECRET" not in text and "AKIAEXAMPLE" not in text
    err = str(storage_error("s3://b/p", PermissionError("denied with optSECRETvalue456"), opts, "list"))
    assert err.startswith("s3://b/p: cannot list: access denied") and "optSECRETvalue456" not in err
    with pytest.raises(UserError, match="JSON object"):
        parse_storage_options("[1]")
