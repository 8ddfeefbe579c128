"""Smoke-check a deployed web app: alive, ready, serving this model, and one real prediction.

    python deploy/smoke.py https://my-app.herokuapp.com [--model-dir saved_models] [--wait 180]

The prediction is for the example image that ships with the model (saved_models/example.png,
written by the export stage from the test split), and its top class must be the answer
model.json records for it, from the model version model.json names (the top class whether or
not the detector calls the image known: the check is that the app runs this model file).
`--image FILE` predicts another file instead and checks only that an answer comes. Retries
until the app is ready (a fresh dyno loads the model first) or --wait seconds pass. Exit
status 0 when every check passed.
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
    parser.add_argument("--model-dir", type=Path, default=Path("saved_models"))
    parser.add_argument("--image", type=Path, help="predict this file instead of the example")
    parser.add_argument("--wait", type=float, default=180)
    args = parser.parse_args(argv)
    card = json.loads((args.model_dir / "model.json").read_text(encoding="utf-8"))
    example = card.get("example")
    if args.image is None and example is None:
        print(f"FAIL: {args.model_dir}/model.json names no example image: run `dvc repro`")
        return 1
    image = args.image or args.model_dir / example["file"]
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
    result = predict(base, image)
    top = result["predictions"][0]
    # An image the detector rejects has label null and its ranked classes under "closest".
    ranked = top.get("top") or top.get("closest") or [{"label": None, "probability": 0.0}]
    label, confidence = ranked[0]["label"], ranked[0]["probability"]
    version = result["model_version"]
    verdict = "" if top.get("known", True) else ", unknown: none of the classes"
    print(f"ok: predicted {label!r} ({confidence:.3f}{verdict}) for {image}, model {version}")
    failed = []
    if version != card["version"]:
        failed.append(f"the app serves model {version}, not {card['version']} ({args.model_dir})")
    if args.image is None and label != example["predicted"]:
        failed.append(
            f"the app answers {label!r} for {image}; the model answers {example['predicted']!r}"
        )
    for line in failed:
        print(f"FAIL: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
