"""What capturing decoder chatter costs per image, next to decoding the image itself.

    .venv/bin/python benchmarks/decode_capture.py              # 224 px and 1024 px JPEGs
    .venv/bin/python benchmarks/decode_capture.py --n 5000

``hspnet tag`` wraps the decoding of every image in ``ChatterLog.capture`` (Python warnings,
``PIL`` log records, file descriptor 2 pointed at a private file; see
``hspnet_cli/tagging/chatter.py``). This prints the capture's cost on an empty block and the
PIL decode time of a small and a photo-sized JPEG with and without it, in microseconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="repetitions of each measurement")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from hspnet_cli.tagging.chatter import ChatterLog
    from hspnet_cli.tagging.decode import open_rgb

    with tempfile.TemporaryDirectory() as tmp:
        chatter = ChatterLog(Path(tmp) / "decode.log")
        start = time.perf_counter()
        for _ in range(args.n):
            with chatter.capture("x.jpg"):
                pass
        print(f"capture of an empty block: {(time.perf_counter() - start) / args.n * 1e6:8.1f} us")
        rng = np.random.default_rng(0)
        for side in (224, 1024):
            path = Path(tmp) / f"{side}.jpg"
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path, quality=90)
            reps = max(10, args.n // (1 if side < 500 else 20))
            for captured in (False, True):
                start = time.perf_counter()
                for _ in range(reps):
                    if captured:
                        with chatter.capture(path.name):
                            open_rgb(path)
                    else:
                        open_rgb(path)
                took = (time.perf_counter() - start) / reps * 1e6
                print(f"decode {side} px JPEG {'with' if captured else 'without'} capture: {took:10.1f} us")


if __name__ == "__main__":
    main()
