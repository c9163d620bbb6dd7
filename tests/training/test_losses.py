"""The training losses: the relative L2 loss is neuraloperator's ``LpLoss(d, p=2, reduction="mean")``."""

from __future__ import annotations

import pickle

import pytest
import torch
from neuralop.losses import LpLoss

from pdebench.core.metrics import relative_l2
from pdebench.training.losses import RelativeL2Loss, make_loss


@pytest.mark.parametrize(("shape", "dim"), [((4, 3, 32), 1), ((2, 2, 8, 8), 2), ((2, 1, 4, 5, 6), 3), ((3, 2, 5, 8, 8), 2)])
def test_rel_l2_loss_equals_neuraloperators_lploss(shape, dim):
    torch.manual_seed(sum(shape))
    pred, target = torch.randn(shape), torch.randn(shape)
    ours = make_loss("rel_l2", dim)(pred, target)
    torch.testing.assert_close(ours, LpLoss(d=dim, p=2, reduction="mean")(pred, target))
    # ... which is relative_l2 per (leading index), the norm over the last ``dim`` axes, eps 1e-8, mean
    torch.testing.assert_close(ours, relative_l2(pred, target, batch_dims=len(shape) - dim, eps=1e-8, reduction="mean"))
    # neuraloperator's "sum" is our per-(sample, channel) values summed
    torch.testing.assert_close(relative_l2(pred, target, batch_dims=len(shape) - dim, eps=1e-8, reduction="sum"),
                               LpLoss(d=dim, p=2, reduction="sum")(pred, target))


def test_rel_l2_loss_has_gradients_and_pickles():
    torch.manual_seed(0)
    loss = make_loss("rel_l2", 2)
    pred = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randn(2, 3, 8, 8)
    loss(pred, target).backward()
    reference = pred.detach().clone().requires_grad_()
    LpLoss(d=2, p=2, reduction="mean")(reference, target).backward()
    torch.testing.assert_close(pred.grad, reference.grad)
    again = pickle.loads(pickle.dumps(loss))
    torch.testing.assert_close(again(pred, target), loss(pred, target))
    with pytest.raises(ValueError, match="dim"):
        RelativeL2Loss(0)
    with pytest.raises(ValueError, match="loss must be"):
        make_loss("l1", 2)  # type: ignore[arg-type]
