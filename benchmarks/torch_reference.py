"""A plain-PyTorch ResNet-18 CIFAR training step, the baseline of `run.py`.

Written for this benchmark (no Keras): the CIFAR ResNet-18 layout of
`keras_crl.models.resnet` (3x3 stride-1 stem, no max-pool, four stages of two
basic blocks with 64/128/256/512 filters, global average pooling, one linear
layer), trained with the authors' recipe: `torch.optim.SGD(lr=0.1,
momentum=0.9, weight_decay=5e-4)` and CRL computed as their code does it, on
softmax probabilities clamped to `[1e-7, 1 - 1e-7]`:

    loss = mean(log((1 - p_y) ** beta / p_y + 1e-7))
"""

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class ResNet18(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def authors_crl(logits, labels, beta=0.25, eps=1e-7):
    """CRL as in the authors' released code (alpha = 0)."""
    p = torch.clamp(F.softmax(logits, dim=1), eps, 1 - eps)
    p_y = p.gather(1, labels[:, None])[:, 0]
    return torch.log((1 - p_y) ** beta / p_y + eps).mean()


def make_step(
    batch_size=64,
    num_classes=10,
    loss="crl",
    device="cpu",
    mixed_precision=False,
    seed=0,
    compiled=False,
):
    """Returns `(step, model)`: `step()` runs one SGD step on a fixed batch.

    `compiled=True` runs the forward pass and the loss through
    `torch.compile` (default mode; the backward is compiled with it, the
    optimizer step stays eager). The first step then compiles (tens of
    seconds on a CPU).
    """
    torch.manual_seed(seed)
    model = ResNet18(num_classes).to(device).train()
    if device != "cpu":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    criterion = authors_crl if loss == "crl" else F.cross_entropy
    use_amp = mixed_precision and device != "cpu"

    def forward():
        with torch.autocast(device_type=device.split(":")[0], enabled=use_amp):
            logits = model(x)
        return criterion(logits.float(), y)

    if compiled:
        forward = torch.compile(forward)

    def step():
        opt.zero_grad(set_to_none=True)
        value = forward()
        value.backward()
        opt.step()
        return value

    return step, model


if __name__ == "__main__":
    import time

    step, _ = make_step()
    step()
    start = time.perf_counter()
    for _ in range(3):
        step()
    per_step = (time.perf_counter() - start) / 3
    print(f"plain PyTorch ResNet-18, batch 64: {64 / per_step:.1f} images/s")
