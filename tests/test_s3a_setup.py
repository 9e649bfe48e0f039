"""The S3 set-up decisions, without a JVM: which package, which settings, when to stay away."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from spark_manifests import JobFailedError
from spark_manifests._packages import packages_for
from spark_manifests._s3a import S3A_FILESYSTEM, ensure_s3a, s3a_settings, with_s3a_packages


class FakeHadoopConf:
    """A Hadoop Configuration: values, and where each came from."""

    def __init__(self, **values: str) -> None:
        self.values = {key.replace("__", "."): value for key, value in values.items()}
        self.sources = {key: ["core-site.xml"] for key in self.values}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value
        self.sources[key] = ["programmatically"]

    def getPropertySources(self, key: str) -> list[str] | None:
        return self.sources.get(key)


def fake_session(conf: FakeHadoopConf, *, hadoop: str = "3.4.1", s3a: bool = True) -> Any:
    def file_system_class(scheme: str, hadoop_conf: Any) -> str:
        if not s3a:
            raise RuntimeError("java.lang.ClassNotFoundException: S3AFileSystem")
        return S3A_FILESYSTEM

    hadoop_package = SimpleNamespace(
        util=SimpleNamespace(VersionInfo=SimpleNamespace(getVersion=lambda: hadoop)),
        fs=SimpleNamespace(FileSystem=SimpleNamespace(getFileSystemClass=file_system_class)),
    )
    jvm = SimpleNamespace(org=SimpleNamespace(apache=SimpleNamespace(hadoop=hadoop_package)))
    context = SimpleNamespace(_jsc=SimpleNamespace(hadoopConfiguration=lambda: conf), _jvm=jvm)
    return SimpleNamespace(_sc=context)


def test_packages_follow_the_hadoop_release() -> None:
    assert packages_for(("s3",), hadoop_version="3.3.4") == ["org.apache.hadoop:hadoop-aws:3.3.4"]
    assert packages_for(["s3"], hadoop_version="3.4.1") == ["org.apache.hadoop:hadoop-aws:3.4.1"]
    with pytest.raises(ValueError, match="Unknown feature 'hdfs'"):
        packages_for(("hdfs",), hadoop_version="3.4.1")
    with pytest.raises(ValueError, match="Hadoop release"):
        packages_for(("s3",), hadoop_version=None)


def test_an_endpoint_gets_path_style_access_and_a_region() -> None:
    local = s3a_settings("3.4.1", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})
    assert local["fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert local["fs.s3a.path.style.access"] == "true"
    assert local["fs.s3a.connection.ssl.enabled"] == "false"
    assert local["fs.s3a.endpoint.region"] == "us-east-1"
    s3_only = {"AWS_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL_S3": "https://b"}
    assert s3a_settings("3.4.1", s3_only)["fs.s3a.endpoint"] == "https://b"
    aws = s3a_settings("3.3.4", {"AWS_REGION": "eu-west-1"})
    assert "fs.s3a.endpoint" not in aws
    assert aws["fs.s3a.endpoint.region"] == "eu-west-1"
    assert aws["fs.s3a.aws.credentials.provider"].startswith("com.amazonaws.")  # SDK v1
    assert aws["fs.s3.impl"] == aws["fs.s3n.impl"] == S3A_FILESYSTEM


def test_settings_the_user_made_are_kept() -> None:
    conf = FakeHadoopConf(fs__s3a__endpoint="http://minio:9000")
    ensure_s3a(fake_session(conf), {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert conf.get("fs.s3a.endpoint") == "http://minio:9000"
    assert conf.get("fs.s3a.path.style.access") == "true"
    assert conf.get("fs.s3.impl") == S3A_FILESYSTEM


def test_emrfs_is_left_untouched() -> None:
    conf = FakeHadoopConf(fs__s3__impl="com.amazon.ws.emr.hadoop.fs.EmrFileSystem")
    ensure_s3a(fake_session(conf, s3a=False), {"AWS_ENDPOINT_URL": "http://x"})
    assert conf.values == {"fs.s3.impl": "com.amazon.ws.emr.hadoop.fs.EmrFileSystem"}


def test_a_session_without_hadoop_aws_gets_one_line_naming_the_package() -> None:
    with pytest.raises(JobFailedError) as raised:
        ensure_s3a(fake_session(FakeHadoopConf(), hadoop="3.3.4", s3a=False), {})
    message = str(raised.value)
    assert "\n" not in message
    assert "--packages org.apache.hadoop:hadoop-aws:3.3.4 " in message
    assert "spark.jars.packages=org.apache.hadoop:hadoop-aws:3.3.4 " in message


def test_a_package_the_user_named_is_not_added_twice() -> None:
    mine = {
        "spark.jars.packages": "io.delta:delta-spark_2.13:4.0.0,org.apache.hadoop:hadoop-aws:3.4.1"
    }
    assert with_s3a_packages(mine) == mine
    added = with_s3a_packages({"spark.jars.packages": "io.delta:delta-spark_2.13:4.0.0"})
    assert added["spark.jars.packages"].startswith("io.delta:delta-spark_2.13:4.0.0,")
    assert ":hadoop-aws:" in added["spark.jars.packages"]
