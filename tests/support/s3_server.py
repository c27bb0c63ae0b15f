"""A real S3-compatible server for the S3 media store's tests: moto's server mode
(``moto_server``, from the ``moto[server]`` package) as its own process on a free
loopback port, answering boto3 over HTTP as any S3 endpoint does."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gridlink.gateway.ports import free_port

# moto accepts any credentials; boto3 needs some to sign with (and, finding them here,
# never asks an instance-metadata address for any: off as well)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "gridlink-test", "AWS_SECRET_ACCESS_KEY": "gridlink-test",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


class S3Server:
    """``with S3Server() as s3:`` — ``s3.endpoint`` is its URL, ``s3.client()`` a boto3
    client, ``s3.bucket(name)`` makes a bucket; the process ends on exit."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def __enter__(self):
        server = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **CREDENTIALS})
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"moto_server did not start on {self.endpoint}") \
                        from None
                time.sleep(0.1)

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def bucket(self, name):
        self.client().create_bucket(Bucket=name)
        return name
