"""CRL from logits with integer labels, in native PyTorch, for the torch backend.

`losses._sparse_logits_loss_ops` computes the same thing with `keras.ops`, the
same ops in the same order, so on torch both give the same bits (checked
by `tests/test_losses.py`). This copy exists for speed and memory alone, as
Keras' own torch backend calls `torch.nn.functional.cross_entropy` rather
than composing `keras.ops`:

- torch runs eagerly, and each `keras.ops` call costs about 10 us of Python
  dispatch. CRL takes a few dozen. With native ops and in-place updates,
  `CompetingRatioLoss` forward + backward went from 2.5-4.1x Keras'
  cross-entropy to 1.5-1.8x (`benchmarks/run.py`, section `loss`).
- The label's entry is zeroed and later overwritten in place
  (`scatter_`), so no `B x K` boolean mask is ever made, and the backward
  keeps one `B x K` buffer, the exponentials, as cross-entropy keeps its
  log-softmax: the peak memory stays below cross-entropy's (section
  `memory`).

The maths, and why `1 - p_y` is never formed, are in `losses.py`.
"""

import torch
import torch.nn.functional as F


class _SparseLogitsLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, index, alpha, beta, floor):
        top = logits.amax(-1, keepdim=True)
        exps = (logits - top).exp_()
        total = exps.sum(-1)
        # The competitors' mass, summed from the competitors themselves.
        competing = exps.scatter_(-1, index, 0.0).sum(-1)
        log_total_shifted = total.log()
        log_total = log_total_shifted + top.squeeze(-1)
        log_label = logits.gather(-1, index).squeeze(-1) - log_total
        log_ratio = competing.log() - log_label - log_total_shifted
        rest = competing / total
        d = torch.clamp(log_ratio, min=floor)
        if alpha == 0:
            losses = F.softplus(d) + beta * F.logsigmoid(d)
        else:
            losses = F.softplus(d) + beta * torch.log(alpha + torch.sigmoid(d))
        # dL/dz is cross-entropy's scaled by this, and zero once clamped.
        scale = 1.0 + beta * log_label.exp() / (alpha + rest)
        scale = torch.where(log_ratio > floor, scale, 0.0)
        # The exponentials (label's entry zeroed; it is overwritten below)
        # serve the backward, as cross-entropy keeps its log-softmax.
        ctx.save_for_backward(exps, index, total, rest, scale)
        return losses

    @staticmethod
    def backward(ctx, upstream):
        exps, index, total, rest, scale = ctx.saved_tensors
        grad = exps / total.unsqueeze(-1)
        # p - onehot(y), the label's entry p_y - 1 written as -(1 - p_y).
        grad.scatter_(-1, index, -rest.unsqueeze(-1))
        grad.mul_((scale * upstream).unsqueeze(-1))
        return grad, None, None, None, None


def sparse_logits_loss(index, logits, alpha, beta, floor):
    """Per-sample CRL of `logits` `(..., K)` at `index` `(..., 1)` (valid labels).

    `floor` is the smallest log competing ratio, `logit(epsilon)`: the clamp
    `p_y <= 1 - epsilon`.
    """
    return _SparseLogitsLoss.apply(logits, index.long(), alpha, beta, floor)
