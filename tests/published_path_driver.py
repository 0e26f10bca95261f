"""Runs hspnet commands in one process and records every CLIP model they build.

Used by ``test_published_path.py`` as a real second process: its environment (a temporary
``HF_HOME`` holding random weights in the Hugging Face cache layout, ``HF_HUB_OFFLINE=1``) must be
set before ``huggingface_hub`` is imported, which an in-process test cannot guarantee.

``python published_path_driver.py STEPS.json OUT.json``: each step is ``{"cli": [args...]}`` (run
through the real Typer app) or ``{"load": [model, tag]}`` (``load_clip`` directly). ``load_clip``
is wrapped, not replaced: every call still builds the real model; the wrapper only writes down
which activations each tower got, and one weight tensor for comparing with the cache file.
"""

from __future__ import annotations

import json
import sys
import time
import traceback


def _activations(module) -> list[str]:  # type: ignore[no-untyped-def]
    names = {type(m).__name__ for m in module.modules()}
    return sorted(names & {"GELU", "QuickGELU", "ReLU"})


def main(steps_path: str, out_path: str) -> None:
    import torch
    from typer.testing import CliRunner

    import hspnet_cli.model.clip_models as clip_models
    from hspnet_cli.cli import app

    torch.set_num_threads(1)
    real = clip_models.load_clip
    builds: list[dict] = []

    def recording_load_clip(*args, **kwargs):  # type: ignore[no-untyped-def]
        clip = real(*args, **kwargs)
        first = next(iter(clip.model.state_dict().items()))
        builds.append(
            {
                "model": clip.model_name,
                "pretrained": clip.pretrained,
                "quick_gelu": clip.quick_gelu,
                "visual": _activations(clip.model.visual),
                "text": _activations(clip.model.transformer),
                "probe": [first[0], float(first[1].float().flatten()[:64].sum())],
            }
        )
        return clip

    clip_models.load_clip = recording_load_clip
    results = []
    runner = CliRunner()
    for step in json.load(open(steps_path)):
        before, start = len(builds), time.perf_counter()
        if "load" in step:
            try:
                clip_models.load_clip(*step["load"])
                results.append({"step": step, "exit_code": 0, "builds": builds[before:]})
            except Exception:  # noqa: BLE001 - reported to the test, which fails with it
                results.append({"step": step, "exit_code": 1, "error": traceback.format_exc()[-2000:]})
            continue
        res = runner.invoke(app, step["cli"], catch_exceptions=True)
        error = (
            "".join(traceback.format_exception(res.exc_info[1]))
            if res.exc_info and res.exit_code not in (0,) and not isinstance(res.exc_info[1], SystemExit)
            else ""
        )
        results.append(
            {
                "step": step,
                "exit_code": res.exit_code,
                "seconds": time.perf_counter() - start,
                "stdout": res.stdout[-3000:],
                "stderr": res.stderr[-3000:] + error[-3000:],
                "builds": builds[before:],
            }
        )
    with open(out_path, "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
