"""Fixtures of the infra tests."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from chalicelib.constants import STAGES
from infra.app import package
from infra.ec2.build_bundle import PACKAGES
from tests.infra.cfn import import_cfnlint


@pytest.fixture(scope="session")
def cfnlint_api() -> ModuleType:
    return import_cfnlint("cfnlint.api")


@pytest.fixture(params=STAGES)
def stage(request: pytest.FixtureRequest) -> str:
    """Each deployable stage in turn."""
    return str(request.param)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both stages packaged into <dist>/app-<stage>/, without AWS credentials."""
    out = tmp_path_factory.mktemp("dist")
    nowhere = str(out / "no-aws-config")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") or k == "AWS_CA_BUNDLE"}
    env |= {"AWS_CONFIG_FILE": nowhere, "AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_EC2_METADATA_DISABLED": "true"}
    for stage in STAGES:
        # As `make package` runs it: chalice package, then the check of the runtime and the zip.
        region = {"AWS_DEFAULT_REGION": package.PACKAGING_REGION}
        try:
            package.package(stage, package.output_dir(stage, out), env=env | region)
        except package.PackagingError as exc:
            pytest.fail(f"packaging {stage} failed: {exc}")
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for dist/hosp-proxy-bundle.tar.gz: a tar.gz that carries NGINX's packages,
    as a fleet without internet access needs (infra/deploy.py checks it)."""
    path = tmp_path_factory.mktemp("bundle") / "hosp-proxy-bundle.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name in ("infra/ec2/bundle/install.sh", f"{PACKAGES}/nginx_1.22.1-9+deb12u12_amd64.deb"):
            info = tarfile.TarInfo(name)
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))
    return path
