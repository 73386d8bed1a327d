"""Shared fixtures: tiny model configurations and the real media in ../shared/data."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch

from models.config import DenoiserConfig, NormKind, VAEConfig, VSRConfig
from models.sr_model import VSRModel
from tests.support.redis_server import RedisServer, start_redis
from tests.support.s3_server import S3Server, start_s3_server

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_config(pipeline: str = "fastvsr", temporal_compression: int = 1) -> VSRConfig:
    """A few-thousand-parameter model whose weights are all random (no zero-initialised heads)."""
    return VSRConfig(
        pipeline=pipeline,  # type: ignore[arg-type]
        vae=VAEConfig(
            block_out_channels=(8, 8, 8, 16), norm_groups=4, temporal_compression=temporal_compression
        ),
        denoiser=DenoiserConfig(hidden_size=32, depth=1, num_heads=2, temporal_window=3),
        zero_init_output=False,
    )


def tiny_model(pipeline: str = "fastvsr", temporal_compression: int = 1, seed: int = 0) -> VSRModel:
    torch.manual_seed(seed)
    model = VSRModel(tiny_config(pipeline, temporal_compression)).eval()
    with torch.no_grad():  # random time biases, so the temporal attention is not uniform
        for block in model.denoiser.blocks:
            block.time_bias.normal_()
    return model


def lr_conditioned_model(
    levels: int, temporal_compression: int = 1, seed: int = 0, norm: NormKind = "frame_group"
) -> VSRModel:
    """A random fastvsr model whose decoder sees the LR clip at `levels` levels (guide convs non-zero)."""
    config = dataclasses.replace(
        replace_vae(tiny_config(temporal_compression=temporal_compression), norm=norm),
        lr_conditioning=True,
        lr_conditioning_levels=levels,
    )
    torch.manual_seed(seed)
    model = VSRModel(config).eval()
    with torch.no_grad():
        for module in (model.decoder.lr_in, *model.decoder.lr_in_deep):
            module.conv.weight.normal_(0, 0.1)  # zero-initialised: make them matter
    return model


@pytest.fixture(autouse=True, scope="session")
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"shared test data missing: {SHARED_DATA}")
    return SHARED_DATA


def replace_vae(config: VSRConfig, **changes: object) -> VSRConfig:
    return dataclasses.replace(config, vae=dataclasses.replace(config.vae, **changes))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server owned by this test session, on a free port."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (Ceph RADOS Gateway on loopback) owned by this test session."""
    server = start_s3_server(tmp_path_factory.mktemp("rgw"))
    yield server
    server.stop()
