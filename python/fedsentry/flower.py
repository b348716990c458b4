"""Robust aggregation for any Flower app (needs ``flwr``; ``pip install fedsentry[flower]``).

``RobustStrategy`` keeps Flower's FedAvg sampling and messages and replaces the aggregation
with a fedsentry rule (any of them, with its state kept between rounds). It works with
someone else's ClientApp: replies carry an ``ArrayRecord`` (any number of arrays, any shapes,
names kept — e.g. a PyTorch ``state_dict``) and a ``MetricRecord`` with ``num-examples``.
Clients are numbered by node id in the order they first answer; the rule's decisions per round
are kept in ``decisions`` and logged.

    from fedsentry.flower import RobustStrategy
    strategy = RobustStrategy({"rule": "krum", "f": 1}, clients=5, rounds=3,
                              min_available_nodes=5, min_train_nodes=5)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(net.state_dict()), num_rounds=3)
"""

from logging import INFO

import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.common import log
from flwr.serverapp.strategy import FedAvg

from . import Aggregator


class RobustStrategy(FedAvg):
    """FedAvg's sampling and messages with a fedsentry rule's aggregation, for any ClientApp
    that replies with ``arrays`` (numpy-convertible, any shapes) and ``metrics`` holding
    ``num-examples``. Clients are ordered by node id; the rule's decisions are kept in
    ``self.decisions`` and logged."""

    def __init__(self, rule, clients: int, rounds: int = 1, seed: int = 0, **fedavg):
        super().__init__(**fedavg)
        self.rule = Aggregator(rule, clients=clients, rounds=rounds, seed=seed)
        self.nodes: dict = {}
        self.global_arrays = None
        self.decisions: list[dict] = []
        # Client index -> the `partition-id` its replies carry, when they carry one.
        self.partition_of_client: dict = {}

    def configure_train(self, server_round, arrays, config, grid):
        self.global_arrays = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        keys = list(self.global_arrays.keys())
        shapes = [a.shape for a in self.global_arrays.to_numpy_ndarrays()]
        flat = lambda rec: np.concatenate([np.asarray(a, np.float32).ravel() for a in rec.to_numpy_ndarrays()])
        updates = []
        for msg in sorted(valid, key=lambda m: m.metadata.src_node_id):
            cid = self.nodes.setdefault(msg.metadata.src_node_id, len(self.nodes))
            if "partition-id" in msg.content["metrics"]:
                self.partition_of_client[cid] = int(msg.content["metrics"]["partition-id"])
            updates.append((cid, flat(msg.content[self.arrayrecord_key]), int(msg.content["metrics"][self.weighted_by_key])))
        new, report = self.rule.aggregate(server_round, flat(self.global_arrays), updates)
        self.decisions.append({"round": server_round, **report})
        for f in report["flags"]:
            log(INFO, "fedsentry %s: client %d %s (%s)", self.rule.name, f["client"], f["action"], f["reason"])
        out, at = [], 0
        for s in shapes:
            size = int(np.prod(s))
            out.append(new[at:at + size].reshape(s))
            at += size
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        # The user's array names (e.g. a state_dict's) are kept.
        return ArrayRecord(array_dict={k: Array(o) for k, o in zip(keys, out)}), metrics
