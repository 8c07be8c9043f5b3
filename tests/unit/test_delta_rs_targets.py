"""Which usage tables delta-rs writes from the driver, and the storage options it gets from
the session's Hadoop S3A settings (the same bucket, endpoint and keys Spark would use)."""

from __future__ import annotations

from aiquery.usage.driver.targets import Target, delta_rs_target

MOTO_LIKE = {  # what the cluster tests give spark-submit, without the spark.hadoop. prefix
    "fs.s3a.endpoint": "http://127.0.0.1:9000",
    "fs.s3a.endpoint.region": "us-east-1",
    "fs.s3a.path.style.access": "true",
    "fs.s3a.connection.ssl.enabled": "false",
    "fs.s3a.access.key": "AKIAEXAMPLE",
    "fs.s3a.secret.key": "s3cr3t-value",
    "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
}


def test_a_local_table_is_written_as_it_is() -> None:
    target = delta_rs_target("/data/warehouse/ai_gateway.db/usage", {}.get)
    assert target == Target("/data/warehouse/ai_gateway.db/usage")
    assert target.local
    assert delta_rs_target("file:///data/usage", {}.get) == Target("/data/usage")


def test_s3a_gets_the_endpoint_region_keys_and_path_style_spark_uses() -> None:
    target = delta_rs_target("s3a://lake/w/ai_gateway.db/usage", MOTO_LIKE.get)
    assert target is not None and not target.local
    assert target.uri == "s3a://lake/w/ai_gateway.db/usage"
    assert dict(target.options) == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
    }


def test_an_endpoint_without_a_scheme_takes_it_from_ssl_and_virtual_hosts_name_the_bucket() -> None:
    settings = {"fs.s3a.endpoint": "minio.internal:9000", "fs.s3a.connection.ssl.enabled": "false"}
    target = delta_rs_target("s3a://lake/usage", settings.get)
    assert target is not None
    # Hadoop's default is virtual-host style; delta-rs then wants the bucket in the endpoint.
    assert target.options["AWS_ENDPOINT_URL"] == "http://lake.minio.internal:9000"
    assert target.options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "true"
    secure = delta_rs_target("s3a://lake/usage", {"fs.s3a.endpoint": "s3.example.com"}.get)
    assert secure is not None
    assert secure.options["AWS_ENDPOINT_URL"] == "https://lake.s3.example.com"
    assert "AWS_ALLOW_HTTP" not in secure.options


def test_a_buckets_own_settings_win() -> None:
    settings = {
        **MOTO_LIKE,
        "fs.s3a.bucket.lake.access.key": "AKIALAKE",
        "fs.s3a.bucket.lake.endpoint.region": "eu-west-1",
    }
    lake = delta_rs_target("s3a://lake/usage", settings.get)
    other = delta_rs_target("s3a://other/usage", settings.get)
    assert lake is not None and other is not None
    assert (lake.options["AWS_ACCESS_KEY_ID"], lake.options["AWS_REGION"]) == (
        "AKIALAKE",
        "eu-west-1",
    )
    assert (other.options["AWS_ACCESS_KEY_ID"], other.options["AWS_REGION"]) == (
        "AKIAEXAMPLE",
        "us-east-1",
    )


def test_no_keys_leaves_credentials_to_delta_rs_own_chain() -> None:
    target = delta_rs_target("s3a://lake/usage", {"fs.s3a.endpoint.region": "us-west-2"}.get)
    assert target is not None
    assert dict(target.options) == {"AWS_REGION": "us-west-2"}  # env, web identity, instance role


def test_what_delta_rs_cannot_reproduce_stays_with_spark() -> None:
    for extra in (
        {"fs.s3a.assumed.role.arn": "arn:aws:iam::1:role/r"},
        {"fs.s3a.bucket.lake.encryption.algorithm": "SSE-KMS"},
        {"fs.s3a.requester.pays.enabled": "true"},
        {"fs.s3a.aws.credentials.provider": "com.example.VaultCredentialsProvider"},
    ):
        assert delta_rs_target("s3a://lake/usage", {**MOTO_LIKE, **extra}.get) is None, extra
    for location in ("abfss://c@acct.dfs.core.windows.net/usage", "hdfs://nn/usage", "gs://b/u"):
        assert delta_rs_target(location, MOTO_LIKE.get) is None, location
    # s3:// is S3A only where Hadoop says so (EMR's s3:// is another file system).
    assert delta_rs_target("s3://lake/usage", MOTO_LIKE.get) is None
    s3a_too = {**MOTO_LIKE, "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
    assert delta_rs_target("s3://lake/usage", s3a_too.get) is not None


def test_credentials_never_show_in_its_repr_or_in_redacted_text() -> None:
    settings = {**MOTO_LIKE, "fs.s3a.session.token": "t0ken-value"}
    target = delta_rs_target("s3a://lake/usage", settings.get)
    assert target is not None
    for secret in ("AKIAEXAMPLE", "s3cr3t-value", "t0ken-value"):
        assert secret not in repr(target)
    text = target.redact("signed with AKIAEXAMPLE/s3cr3t-value and t0ken-value at 127.0.0.1")
    assert text == "signed with ***/*** and *** at 127.0.0.1"
