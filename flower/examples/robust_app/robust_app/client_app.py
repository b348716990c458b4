"""A hospital with a small logistic-regression model on its own (here: generated) data, in
plain PyTorch; partition 4 is an attacker that scales what it sends by 100."""

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 2))


def data(pid: int):
    rng = np.random.default_rng(pid)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


@app.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    net = model()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = data(pid)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    state = net.state_dict()
    if pid == 4:
        state = {k: v * 100.0 for k, v in state.items()}
    metrics = MetricRecord({"num-examples": len(y), "partition-id": pid})
    return Message(RecordDict({"arrays": ArrayRecord(state), "metrics": metrics}), reply_to=msg)
