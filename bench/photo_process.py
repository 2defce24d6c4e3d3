"""What re-encoding one large upload costs: `listings.photos.process_photo` against Pillow
alone doing the least any re-encode must (decode, shrink to the stored size, encode JPEG),
each in a fresh process, so its peak memory is its own.

    .venv/bin/python bench/photo_process.py            # a 6324×6324 PNG, RGB and RGBA

Prints CPU seconds and the peak resident memory each adds to a process that has the upload
in memory already.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
SIDE = 6324  # just under 40 MP, the most an upload may have (listings.photos.MAX_PIXELS)


def _upload(mode: str) -> bytes:
    from PIL import Image  # noqa: PLC0415

    image = Image.new(mode, (SIDE, SIDE), (10, 120, 30, 255) if mode == "RGBA" else (10, 120, 30))
    image.paste((200, 30, 30) + ((0,) if mode == "RGBA" else ()), (0, 0, SIDE // 2, SIDE))
    buffer = BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _measure(target: str, mode: str) -> dict:
    """In this (fresh) process: the upload built, then `target` run once on it."""
    data = _upload(mode)
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    if target == "ours":
        import django  # noqa: PLC0415

        django.setup()
        from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: PLC0415

        from listings.photos import process_photo  # noqa: PLC0415

        started = time.process_time()  # Django's start-up is no part of an upload
        before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        upload = SimpleUploadedFile("p.png", data, content_type="image/png")
        result = process_photo(upload)
        size = (result.width, result.height)
    else:  # Pillow alone: decode, shrink, encode
        from PIL import Image  # noqa: PLC0415

        with Image.open(BytesIO(data)) as source:
            image = source.convert("RGB")
            image.thumbnail((2048, 2048), Image.Resampling.LANCZOS)
        image.save(BytesIO(), "JPEG", quality=85)
        size = image.size
    return {
        "target": target,
        "mode": mode,
        "upload_kb": len(data) // 1024,
        "size": size,
        "cpu_s": round(time.process_time() - started, 2),
        "peak_added_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) // 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("TARGET", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(*args.one)))
        return 0
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get(
            "DJANGO_SETTINGS_MODULE", "marketplace.settings.dev"
        ),
        "LISTING_PHOTO_MAX_BYTES": str(200 * 1024 * 1024),
        "PYTHONPATH": str(BASE_DIR),
    }
    for mode in ("RGB", "RGBA"):
        for target in ("pillow", "ours"):
            line = (
                subprocess.run(  # noqa: S603 (this script, run again)
                    [sys.executable, __file__, "--one", target, mode],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            row = json.loads(line)
            print(
                f"{row['mode']:4} {row['target']:6} {row['upload_kb']:>6} KB PNG → "
                f"{row['size'][0]}×{row['size'][1]}: {row['cpu_s']:.2f} s CPU, "
                f"+{row['peak_added_mb']} MB peak"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
