"""Smoke-check a deployed web app: alive, ready, and one real prediction.

    python deploy/smoke.py https://my-app.herokuapp.com path/to/image.png [--wait 180]

Retries until the app is ready (a fresh dyno loads the model first) or --wait seconds pass.
Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, {}
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return 0, {}


def predict(base: str, image: Path) -> dict:
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="image"; filename="smoke.png"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        f"{base}/api/v1/predict",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("image", type=Path)
    parser.add_argument("--wait", type=float, default=180)
    args = parser.parse_args(argv)
    base = args.base_url.rstrip("/")
    deadline = time.monotonic() + args.wait
    status = 0
    while time.monotonic() < deadline:
        status, _ = get(f"{base}/healthz")
        ready, _ = get(f"{base}/readyz")
        if status == 200 and ready == 200:
            break
        time.sleep(3)
    else:
        print(f"FAIL: {base} not healthy and ready after {args.wait:.0f} s (healthz {status})")
        return 1
    print(f"ok: {base}/healthz and /readyz answer 200")
    result = predict(base, args.image)
    top = result["predictions"][0]
    label, confidence, version = top["label"], top["confidence"], result["model_version"]
    print(f"ok: predicted {label!r} ({confidence:.3f}), model {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
