"""PyTorch side of the training-throughput benchmark: the same models and the same loop as
fedsentry's trainer (index a batch, forward, cross-entropy, zero_grad, backward, Adam step,
loss.item(), accuracy count). Prints one JSON line: {"model": ..., "images_per_s": ...}."""
import argparse, json, time
import torch
import torch.nn as nn


def small_cnn(cin, classes, size):
    return nn.Sequential(
        nn.Conv2d(cin, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (size // 4) ** 2, 128), nn.ReLU(), nn.Linear(128, classes))


def cbr(cin, cout, k, s, g):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=g, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())


class InvRes(nn.Module):
    def __init__(self, cin, cout, s, t):
        super().__init__()
        h = cin * t
        layers = ([cbr(cin, h, 1, 1, 1)] if t != 1 else []) + [cbr(h, h, 3, s, h), nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.res = s == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class MobileNetV2(nn.Module):
    # torchvision.models.mobilenet_v2's structure (torchvision is not a dependency here).
    def __init__(self, classes):
        super().__init__()
        feats, cin = [cbr(3, 32, 3, 2, 1)], 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                feats.append(InvRes(cin, c, s if i == 0 else 1, t))
                cin = c
        feats.append(cbr(cin, 1280, 1, 1, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def vgg16(classes):
    # torchvision.models.vgg16's structure (configuration D, adaptive 7x7 pooling, dropout 0.5).
    feats, cin = [], 3
    for v in [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]:
        if v == 0:
            feats.append(nn.MaxPool2d(2))
        else:
            feats += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    return nn.Sequential(*feats, nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                         nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, classes))


MODELS = {"small_cnn": lambda size: small_cnn(1, 4, size), "mobilenet_v2": lambda size: MobileNetV2(4),
          "vgg16": lambda size: vgg16(4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=sorted(MODELS))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs; the median is reported")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cin = 1 if a.model == "small_cnn" else 3
    net = MODELS[a.model](a.size)
    x = torch.rand(a.images, cin, a.size, a.size)
    y = torch.randint(0, 4, (a.images,))
    opt = torch.optim.Adam(net.parameters(), 1e-3)

    def epoch():
        net.train()
        perm = torch.randperm(a.images)
        correct = 0
        for i in range(0, a.images, a.batch):
            idx = perm[i:i + a.batch]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            logits = net(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            correct += (logits.argmax(-1) == yb).sum().item()

    epoch()  # warm-up
    rates = []
    for _ in range(a.epochs):
        t = time.perf_counter()
        epoch()
        rates.append(a.images / (time.perf_counter() - t))
    rate = sorted(rates)[len(rates) // 2]
    print(json.dumps({"model": a.model, "images_per_s": rate, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
