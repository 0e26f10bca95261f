"""Likely label errors from out-of-sample probabilities (``hspnet audit``).

``insample`` checks that a checkpoint never trained on the audited images (from the training
keys it records), ``scores`` turns a checkpoint into probabilities for a LabelSet, ``issues``
hands labels and probabilities to cleanlab's multi-label functions and names each finding,
``outputs`` writes ``issues.csv``, the report and Label Studio tasks, and ``run`` ties them
together. Training out-of-fold models (``--folds``) lives in the training room's ``folds`` module;
this room only uses models.
"""

from hspnet_cli.audit.run import AuditOptions, audit_labels, read_labels

__all__ = ["AuditOptions", "audit_labels", "read_labels"]
