"""Single-positive multi-label (SPML) losses, chosen by name so the trainer can swap them.

Targets use the SPML encoding: ``1`` observed positive, ``0`` unobserved (unknown), ``-1``
observed negative (present in partial-label splits). Logits are raw scores before the sigmoid
(the model's ``cos / tau``); ``p = sigmoid(logit)``, ``p_m = sigmoid(logit - margin)``.

Observed negatives (``-1``): every loss here treats them as *known* negatives and gives them the
plain BCE negative term ``-log(1 - p)``, inside that loss's own reduction. They are never
pseudo-labelled (SPLC), never entropy-maximised (EM), never rejected or corrected (LargeLoss).

=========  =============================================================  ====================
name       per-entry term                                                 reduction
=========  =============================================================  ====================
splc       pos ``-(1-p_m)^g log p_m``; unobserved ``-p^g log(1-p)``, or   sum over B x C
           ``-(1-p)^g log p`` when ``p > threshold`` from ``start_epoch``
hill       pos as SPLC; unobserved ``(lamb - p) p^2``                     sum over B x C
an         BCE, every unobserved entry a negative                         mean over B x C
epr        pos ``-log p``; plus ``(mean_b sum_c p - k)^2 / C^2``          term sum / (B C)
                                                                          + regulariser
em         pos ``-log p``; unobserved ``-alpha H(p)``                     mean over B x C
ll-r/ct/cp AN, the k largest unobserved losses rejected / corrected       mean over B x C
role       0.5 (pos(p) + pos(e)) + 0.5 (BCE(p; e) + BCE(e; p)), e the     mean over B x C
           learned label estimate of the entry, other side detached       + regularisers
bce        BCE on known entries (1, -1) only; unknown ignored             mean over known
=========  =============================================================  ====================

Every log of a probability is computed as a log-sigmoid of the logit, and powers of
probabilities as ``exp(g * logsigmoid)``, so no clamp is needed and gradients stay finite for
any finite logit. The published code computes ``-log(p + 1e-5)`` instead; that epsilon is not
negligible where p is small. Measured per entry (float64), ``|-logsigmoid(x) + log(sigmoid(x) +
1e-5)|`` is 2e-5 at x = 0, 5.6e-4 at x = -4, 0.029 at x = -8 and 0.20 at x = -10 (the fixed
scale 10 puts logits in [-10, 10]); its gradient there is -0.82 instead of -1.0. So per-entry
values here differ from the published ones by up to 0.20 for confidently wrong entries, and
such entries get a little more gradient here; elsewhere the two agree closely.
"""

from hspnet_cli.losses.base import SPMLLoss
from hspnet_cli.losses.registry import LOSS_NAMES, build_loss, loss_defaults, loss_param_groups

__all__ = ["LOSS_NAMES", "SPMLLoss", "build_loss", "loss_defaults", "loss_param_groups"]
