"""A scripted reviewer for the label-loop example's small mode: what a person does in Label Studio.

Reads the tasks `hspnet export-labels --to label-studio` wrote (model predictions pre-ticked),
answers the first N of them with the true labels of the demo world (accepting right choices,
unticking wrong ones, adding missed ones), leaves the rest unanswered, and writes the result in
Label Studio's JSON export format, as "Export -> JSON" would. Unanswered tasks are unlabelled,
never negative, when `hspnet split` reads the export back.

Usage: python scripted_review.py TASKS_JSON TRUTH_CSV N OUT_JSON
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def main() -> None:
    tasks_path, truth_path, n, out_path = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    tasks = json.loads(tasks_path.read_text(encoding="utf-8"))
    with open(truth_path, newline="", encoding="utf-8") as fh:
        truth = {row["image"]: [x for x in row["labels"].split(";") if x] for row in csv.DictReader(fh)}
    changed = 0
    for i, task in enumerate(tasks):
        task["id"] = i + 1
        prediction = task.get("predictions", [{}])[0].get("result", [])
        if i >= n:
            task["annotations"] = []
            continue
        template = prediction[0] if prediction else {"from_name": "labels", "to_name": "image", "type": "choices"}
        answer = truth[task["data"]["hspnet_path"]]
        before = set(prediction[0]["value"]["choices"]) if prediction else set()
        changed += before != set(answer)
        result = [{**template, "value": {"choices": answer}}] if answer else []
        task["annotations"] = [{"id": i + 1, "completed_by": 1, "result": result, "was_cancelled": False}]
    out_path.write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    print(f"reviewed {min(n, len(tasks))} of {len(tasks)} tasks; corrected the model's choices on {changed}")


if __name__ == "__main__":
    main()
