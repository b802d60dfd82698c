"""schemathesis (all checks, stateful phase included) against the running service's own
OpenAPI document: no 5xx, no undocumented status, responses match their schemas."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.services import embedded_env, running_stack


def test_generated_requests_never_break_the_documented_contract(tmp_path: Path):
    env = {
        **embedded_env(tmp_path / "data"),
        # The fuzzer is one client sending hundreds of requests a second; limits stay on but out of its way.
        "IMGPROC_NEW_USERS_PER_MINUTE_PER_IP": "100000",
        "IMGPROC_UPLOADS_PER_MINUTE_PER_USER": "100000",
        "IMGPROC_MAX_PENDING_TASKS_PER_USER": "100000",
    }
    with running_stack(env, tmp_path / "logs") as stack, stack.client() as client:
        client.get("/api/tasks")
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "run",
                f"{stack.url}/openapi.json",
                "--checks",
                "all",
                # "Schema-valid" here means any bytes in `file`; OpenAPI cannot say "a decodable
                # image", so a 415/422 for random bytes is correct, not a rejected valid request.
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "30",
                "--seed",
                "20261127",
                "--header",
                f"Cookie: {cookie}",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    summary = run.stdout[-3000:]
    print(summary)
    assert run.returncode == 0, summary
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert generated and int(generated.group(1)) > 200 and generated.group(1) == generated.group(2)
