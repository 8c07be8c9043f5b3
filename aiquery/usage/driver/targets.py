"""Where the driver's own process can write a usage table with delta-rs, and with what
storage settings; None where Spark must (`merges` runs the same MERGE either way).

- A local or mounted directory: as it is.
- S3 (`s3a://`, and `s3://` where Hadoop maps it to S3A): with the settings Spark itself
  would use for that bucket, read from the driver's Hadoop configuration (`fs.s3a.*`, a
  bucket's own `fs.s3a.bucket.<name>.*` first) and turned into delta-rs' storage options:
  endpoint (its scheme from `connection.ssl.enabled`), region, path or virtual-host style,
  static or temporary keys; without keys, delta-rs' own chain (environment, web identity,
  instance profile), the one Hadoop's default providers follow. delta-rs (1.6, object_store
  0.13) commits a version with a conditional PUT (`If-None-Match: *`): of two writers of one
  version exactly one wins and the other runs its MERGE again, with no lock table. Amazon S3,
  MinIO, R2 and moto's server honour the header.
- Anything else: None. abfss://, gs://, hdfs://, and S3 settings delta-rs cannot reproduce
  (an assumed role, a custom credentials provider, server-side encryption, requester pays):
  Spark's MERGE with Spark's own file system is always right, only slower.

The storage options hold credentials: `Target` never prints them, and `redact` takes them out
of any error text that is logged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from aiquery.usage.driver.settings import local_path

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark.sql import SparkSession

Hadoop = Callable[[str], "str | None"]  # a Hadoop setting by name (None: unset)

S3A = "org.apache.hadoop.fs.s3a.S3AFileSystem"
# Hadoop credential providers whose credentials delta-rs finds the same way: the static or
# temporary keys we pass, the environment, web identity, the instance or container role.
_PROVIDERS = {
    "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider",
    "org.apache.hadoop.fs.s3a.auth.IAMInstanceCredentialsProvider",
    "com.amazonaws.auth.EnvironmentVariableCredentialsProvider",
    "com.amazonaws.auth.InstanceProfileCredentialsProvider",
    "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider",
    "software.amazon.awssdk.auth.credentials.InstanceProfileCredentialsProvider",
    "software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider",
    "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
}
# S3A settings that change how objects are written or paid for: delta-rs would not honour them.
_UNSUPPORTED = (
    "assumed.role.arn",
    "encryption.algorithm",
    "server-side-encryption-algorithm",
    "requester.pays.enabled",
)
_COLOURS = re.compile(r"\x1b\[[0-9;]*m")
_KEYS = (
    ("access.key", "AWS_ACCESS_KEY_ID"),
    ("secret.key", "AWS_SECRET_ACCESS_KEY"),
    ("session.token", "AWS_SESSION_TOKEN"),
)


@dataclass(frozen=True, slots=True)
class Target:
    """A table delta-rs can write: its URI and storage options (credentials: never shown)."""

    uri: str
    options: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def local(self) -> bool:
        return not self.options and "://" not in self.uri

    def open(self) -> DeltaTable:
        """The table's newest version."""
        from deltalake import DeltaTable

        return DeltaTable(self.uri, storage_options=dict(self.options) or None)

    def redact(self, text: str) -> str:
        """`text` (an error to log) with every credential of the options replaced by ***,
        and without delta-rs' terminal colours."""
        for _, option in _KEYS:
            value = self.options.get(option)
            if value:
                text = text.replace(value, "***")
        return _COLOURS.sub("", text)


def delta_rs_target(location: str, hadoop: Hadoop) -> Target | None:
    """Where delta-rs writes the table at `location`, or None to leave it to Spark."""
    path = local_path(location)
    if path is not None:
        return Target(str(path))
    parsed = urlparse(location)
    s3 = parsed.scheme == "s3a" or (parsed.scheme == "s3" and hadoop("fs.s3.impl") == S3A)
    if not s3 or not parsed.netloc:
        return None
    options = s3_options(parsed.netloc, hadoop)
    return None if options is None else Target(location, options)


def s3_options(bucket: str, hadoop: Hadoop) -> dict[str, str] | None:
    """delta-rs' storage options for `bucket` from Hadoop's S3A settings; None when the
    settings ask for something delta-rs would not do the same way."""

    def get(name: str) -> str | None:
        found = hadoop(f"fs.s3a.bucket.{bucket}.{name}") or hadoop(f"fs.s3a.{name}")
        return found.strip() if found and found.strip() else None

    if any(get(name) for name in _UNSUPPORTED):
        return None
    providers = [p.strip() for p in (get("aws.credentials.provider") or "").split(",")]
    if any(p and p not in _PROVIDERS for p in providers):
        return None
    options: dict[str, str] = {}
    for name, option in _KEYS:
        value = get(name)
        if value:
            options[option] = value
    region = get("endpoint.region")
    if region:
        options["AWS_REGION"] = region
    endpoint = get("endpoint")
    if endpoint:
        secure = (get("connection.ssl.enabled") or "true").lower() != "false"
        if "://" not in endpoint:
            endpoint = ("https://" if secure else "http://") + endpoint
        url = urlparse(endpoint)
        if url.scheme == "http":
            options["AWS_ALLOW_HTTP"] = "true"
        path_style = (get("path.style.access") or "false").lower() == "true"
        if not path_style:  # delta-rs expects the bucket in a virtual-host endpoint
            endpoint = f"{url.scheme}://{bucket}.{url.netloc}{url.path}"
        options["AWS_ENDPOINT_URL"] = endpoint.rstrip("/")
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = str(not path_style).lower()
    return options


def hadoop_settings(spark: SparkSession) -> Hadoop:
    """The session's Hadoop configuration (SparkContext's, plus the session's own
    `spark.hadoop.*`), as Delta itself reads it; secrets through `getPassword`, so a
    credential provider file (`hadoop.security.credential.provider.path`) works too."""
    conf = spark._jsparkSession.sessionState().newHadoopConf()

    def get(name: str) -> str | None:
        if name.endswith((".key", ".token")):
            secret = conf.getPassword(name)
            return None if secret is None else "".join(secret)
        value = conf.get(name)
        return None if value is None else str(value)

    return get
