"""Settings come from VSR_* variables (nested with '__') and are validated with precise messages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, load_settings
from service.tenants import TenantDirectory, hash_api_key
from service.webhook_signing import generate_secret

DIGEST = hash_api_key("vsr_test-key")


def tenant(tenant_id: str = "acme") -> dict[str, object]:
    return {"id": tenant_id, "api_key_sha256": [DIGEST], "webhook_secret": generate_secret()}


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VSR_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.embedded and settings.storage_backend == "local"
    assert settings.max_upload_bytes == 2 * 1024**3 and settings.default_model == "fastvsr-tiny"
    assert settings.webhook_retry_schedule_s == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    assert settings.webhook_retry_jitter == 0.1


def test_environment_variables_with_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSR_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("VSR_S3__BUCKET", "jobs")
    monkeypatch.setenv("VSR_S3__ENDPOINT_URL", "http://rgw:7480")
    monkeypatch.setenv("VSR_S3__INPUT_BUCKETS", '["in-a", "in-b"]')
    monkeypatch.setenv("VSR_TENANTS", json.dumps([tenant()]))
    monkeypatch.setenv("VSR_MAX_UPLOAD_BYTES", "1000")
    settings = Settings()
    assert not settings.embedded and settings.storage_backend == "s3"
    assert settings.s3 is not None and settings.s3.input_buckets == ["in-a", "in-b"]
    assert settings.max_upload_bytes == 1000
    directory = TenantDirectory.from_settings(settings)
    found = directory.authenticate("vsr_test-key")
    assert found is not None and found.id == "acme"
    assert directory.authenticate("vsr_other") is None


def test_tenants_file_is_merged(tmp_path: Path) -> None:
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps([tenant("from-file")]))
    settings = load_settings(tenants=[tenant("inline")], tenants_file=path)
    assert [t.id for t in settings.tenants] == ["inline", "from-file"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tenants": [tenant(), tenant()]}, "duplicate tenant ids"),
        ({"tenants": [{**tenant(), "id": "Bad Id"}]}, "tenant id must be"),
        ({"tenants": [{**tenant(), "api_key_sha256": ["plain-key"]}]}, "64 lowercase hex"),
        ({"tenants": [{**tenant(), "webhook_secret": "whsec_c2hvcnQ="}]}, "at least 24 bytes"),
        ({"tenants": [{**tenant(), "webhook_secret": "secret"}]}, "whsec_"),
        ({"tenants_file": Path("/nonexistent/tenants.json")}, "cannot read tenants_file"),
        ({"max_upload_bytes": 0}, "greater than or equal to 1"),
        ({"s3": {"bucket": "b", "presign_expiry_s": 10**7}}, "less than or equal to 604800"),
        ({"webhook_retry_jitter": 1.0}, "less than 1"),
        ({"webhook_retry_jitter": -0.1}, "greater than or equal to 0"),
        ({"webhook_retry_schedule_s": []}, "at least 1 item"),
        ({"webhook_retry_schedule_s": [0, -5]}, "delays must be >= 0"),
    ],
)
def test_invalid_settings_name_the_problem(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_settings(**overrides)
