"""PyTorch side of the PGD benchmark: the small CNN (eval mode), a batch of 64 images 28x28, the
same L-infinity PGD loop as fedsentry (random start, signed-gradient steps, projection onto the
eps-ball and [0, 1]). Prints one JSON line: {"steps": ..., "ms_per_batch": ...} (median)."""
import argparse, json, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_train_step import small_cnn


def pgd(model, x, y, eps, alpha, steps):
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        (g,) = torch.autograd.grad(loss, adv)
        adv = torch.max(torch.min(adv.detach() + alpha * g.sign(), hi), lo)
    return adv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = small_cnn(1, 2, 28).eval()
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 2, (64,))
    pgd(model, x, y, 0.03, 0.007, a.steps)  # warm-up
    times = []
    for _ in range(a.reps):
        t = time.perf_counter()
        pgd(model, x, y, 0.03, 0.007, a.steps)
        times.append(1000 * (time.perf_counter() - t))
    print(json.dumps({"steps": a.steps, "ms_per_batch": statistics.median(times)}))


if __name__ == "__main__":
    main()
