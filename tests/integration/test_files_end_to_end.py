"""Files back from a job, end to end: the API and a worker from their PEX files, a real
redis-server and NsJail, API keys on; every request over HTTP."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from corral_testbed.services import Corral, corral_on_its_own_redis


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral_on_its_own_redis(tmp_path_factory, workers=1, auth=True) as running:
        yield running


def run(service: Corral, key: str, body: dict[str, Any], **params: Any) -> httpx.Response:
    """The finished job, waiting as long as it takes on a loaded machine, or the refusal."""
    headers = {"Authorization": f"Bearer {key}"}
    answer = httpx.post(f"{service.url}/execute", params={"wait": 30, **params}, json=body, headers=headers, timeout=60)
    for _ in range(10):
        if answer.status_code != 202:
            return answer
        job_url = f"{service.url}/jobs/{answer.json()['job_id']}"
        answer = httpx.get(job_url, params={"wait": 30, **params}, headers=headers, timeout=60)
        if answer.json()["status"] not in ("PENDING", "RUNNING"):
            return answer
    return answer


def download(service: Corral, key: str, job_id: str, name: str) -> httpx.Response:
    return httpx.get(f"{service.url}/jobs/{job_id}/files/{name}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_a_matplotlib_figure_comes_back_as_a_png_that_decodes(service: Corral) -> None:
    key = service.create_key("plotter")
    code = (
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([0, 1, 2], [0, 1, 4])\nplt.savefig('plot.png', dpi=50)\n"
    )
    done = run(service, key, {"language": "python-sci", "code": code, "outputs": ["plot.png"]})
    assert done.status_code == 200, done.text
    result = done.json()["result"]
    assert result["verdict"] == "ok", result
    [listed] = result["files"]
    assert listed["name"] == "plot.png" and listed["media_type"] == "image/png"
    got = download(service, key, done.json()["job_id"], "plot.png")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff" and got.headers["content-disposition"].startswith("attachment")
    png = got.content
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) == listed["size"]
    assert hashlib.sha256(png).hexdigest() == listed["sha256"]
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk: 6.4 x 4.8 inches at 50 dpi
    assert (width, height) == (320, 240)
    assert download(service, service.create_key("stranger"), done.json()["job_id"], "plot.png").status_code == 404


def test_a_csv_a_c_program_writes_comes_back_byte_for_byte(service: Corral) -> None:
    key = service.create_key("c-writer")
    code = (
        "#include <stdio.h>\n#include <sys/stat.h>\n"
        "int main(void) { mkdir(\"out\", 0700); FILE *f = fopen(\"out/table.csv\", \"w\");\n"
        "  for (int i = 0; i < 1000; i++) fprintf(f, \"%d,%d\\r\\n\", i, i * i);\n"
        "  fputc(0, f); fputc(255, f); fclose(f); return 0; }\n"
    )
    expected = b"".join(f"{i},{i * i}\r\n".encode() for i in range(1000)) + b"\x00\xff"
    done = run(service, key, {"language": "c", "code": code, "outputs": True}, inline_files="true")
    assert done.status_code == 200, done.text
    [listed] = done.json()["result"]["files"]
    assert listed["name"] == "out/table.csv" and listed["size"] == len(expected)
    assert base64.b64decode(listed["content_base64"]) == expected
    assert download(service, key, done.json()["job_id"], "out/table.csv").content == expected


def test_what_a_program_plants_comes_back_left_out_with_why_and_the_worker_keeps_serving(service: Corral) -> None:
    key = service.create_key("planter")
    code = (
        "import os\nos.makedirs('out')\n"
        "os.symlink('/proc/self/environ', 'out/environ')\nos.symlink('/etc/shadow', 'out/shadow')\n"
        "os.mkfifo('out/pipe')\nopen('out/ok.txt', 'w').write('ok')\n"
    )
    result = run(service, key, {"code": code, "outputs": True}).json()["result"]
    assert [file["name"] for file in result["files"]] == ["out/ok.txt"]
    assert {left["name"]: left["reason"] for left in result["files_left_out"]} == {
        "out/environ": "a symbolic link",
        "out/shadow": "a symbolic link",
        "out/pipe": "not a regular file",
    }
    assert run(service, key, {"code": "print(1)"}).json()["result"]["stdout"] == "1\n"


def test_files_count_against_their_keys_stored_bytes(service: Corral) -> None:
    # A job asking files back books max_returned_files_kb (16 MiB by default) until it ends.
    small = service.create_key("small", "--max-stored-bytes", "4000000")
    refused = run(service, small, {"code": "print(1)", "outputs": True})
    assert refused.status_code == 429 and "stored bytes" in refused.json()["detail"]
    fits = run(service, small, {"code": "open('o.txt', 'w').write('x')", "outputs": ["o.txt"], "limits": {"max_returned_files_kb": 64}})
    assert fits.status_code == 200, fits.text
    assert [file["name"] for file in fits.json()["result"]["files"]] == ["o.txt"]
