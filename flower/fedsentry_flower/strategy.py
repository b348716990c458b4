"""A Flower strategy whose aggregation is a fedsentry rule.

``FedsentryStrategy`` drives an experiment's federation on a real deployment: each round it
asks the rule for the round's configuration (FedProx's mu travels as ``proximal-mu``), collects
the hospitals' updates, orders them by hospital (the ``partition-id`` each node was configured
with, bound to that node's identity the first time it answers), applies the experiment's model
poisoning where the simulation does, aggregates with the experiment's rule and evaluates clean
accuracy and ASR on the server's test set. It writes the simulation's ``history.csv``,
``defense.csv`` and ``summary.json`` columns it can measure.

For someone else's ClientApp, the rule alone is ``fedsentry.flower.RobustStrategy`` (in the
package; flower/examples/robust_app uses it).
"""

import csv
import io
import json
import os
import time
from logging import INFO, WARNING

from flwr.app import ArrayRecord, MetricRecord
from flwr.common import log
from flwr.serverapp.strategy import FedAvg

import fedsentry

from .common import from_record, to_record


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _csv(path: str, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0].keys())
    for r in rows[1:]:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    _write_atomic(path, buf.getvalue())


class _Updates:
    """Replies checked and ordered by hospital; a malformed reply is logged and left out,
    never aggregated and never fatal."""

    def __init__(self, owners: dict, clients: int):
        self.owners = owners  # partition id -> node id that first answered for it
        self.clients = clients
        self.problems: list[str] = []

    def collect(self, replies, expected: set) -> list:
        got = {}
        for msg in replies:
            node = msg.metadata.src_node_id
            if msg.has_error():
                self.problems.append(f"node {node}: {msg.error.reason}")
                continue
            try:
                m = msg.content["metrics"]
                pid, n = int(m["partition-id"]), int(m["num-examples"])
                params = from_record(msg.content["arrays"], f"node {node} arrays")
            except (KeyError, TypeError, ValueError) as e:
                self.problems.append(f"node {node}: malformed reply: {e}")
                continue
            if not 0 <= pid < self.clients:
                self.problems.append(f"node {node}: partition-id {pid} out of range")
                continue
            owner = self.owners.setdefault(pid, node)
            if owner != node:
                self.problems.append(f"node {node}: claims partition {pid}, which node {owner} holds")
                continue
            if pid in got:
                self.problems.append(f"node {node}: a second reply for partition {pid}")
                continue
            if pid in expected:
                got[pid] = (pid, params, n, m)
        for p in self.problems:
            log(WARNING, "fedsentry: %s", p)
        return [got[k] for k in sorted(got)]


class FedsentryStrategy(FedAvg):
    def __init__(self, exp: "fedsentry.Experiment", out: str):
        n = exp.num_clients
        super().__init__(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=n,
                         min_evaluate_nodes=n, min_available_nodes=n)
        self.exp = exp
        self.out = out
        os.makedirs(out, exist_ok=True)
        self.global_params = exp.initial_params()
        self.owners: dict = {}
        self.plan: dict = {}
        self.history: list[dict] = []
        self.defense: list[dict] = []
        self.stopped = None

    def configure_train(self, server_round, arrays, config, grid):
        self.round_start = time.monotonic()
        self.global_params = from_record(arrays, "global arrays")
        self.plan = self.exp.configure(server_round)
        if self.plan["stop"]:
            self.stopped = self.stopped or f"before round {server_round}: {self.plan['stop']}"
            log(INFO, "fedsentry: stopping %s", self.stopped)
            return []
        config["proximal-mu"] = float(self.plan["proximal_mu"])
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        updates = _Updates(self.owners, self.exp.num_clients).collect(list(replies), set(self.plan.get("clients", [])))
        if not updates:
            return None, None
        ups = self.exp.poison_updates(server_round, self.global_params, [(p, a, n) for p, a, n, _ in updates])
        new, report = self.exp.aggregate(server_round, self.global_params, ups)
        examples = sum(n for _, _, n, _ in updates)
        malicious = set(self.exp.malicious_clients)
        self.history.append({
            "round": server_round,
            "clients_fit": len(updates),
            "malicious_fit": sum(1 for p, *_ in updates if p in malicious),
            "train_loss": sum(float(m["train-loss"]) * n for _, _, n, m in updates) / examples,
            "train_accuracy": sum(float(m["train-accuracy"]) * n for _, _, n, m in updates) / examples,
        })
        for f in report["flags"]:
            self.defense.append({"round": server_round, "client": f["client"], "malicious": f["client"] in malicious,
                                 "action": f["action"], "weight": f["weight"], "reason": f["reason"]})
        _csv(os.path.join(self.out, "defense.csv"), self.defense)
        return to_record(new), MetricRecord({"num-examples": examples, "accepted": len(report["accepted"]),
                                             "flagged": len(report["flags"])})

    def aggregate_evaluate(self, server_round, replies):
        rows = []
        for msg in replies:
            if msg.has_error():
                continue
            m = msg.content["metrics"]
            if int(m.get("num-examples", 0)) > 0:
                rows.append((int(m["num-examples"]), float(m["loss"]), float(m["accuracy"])))
        if not rows or not self.history:
            return None
        n = sum(r[0] for r in rows)
        val = {"val_loss": sum(r[0] * r[1] for r in rows) / n, "val_accuracy": sum(r[0] * r[2] for r in rows) / n}
        self.history[-1].update(val)
        return MetricRecord(val)

    def evaluate(self, server_round: int, arrays: ArrayRecord):
        """Server-side evaluation (Strategy.start's evaluate_fn): clean accuracy and ASR."""
        if server_round == 0 or not self.history or self.history[-1]["round"] != server_round:
            return None
        e = self.exp.evaluate(from_record(arrays, "global arrays"))
        self.history[-1].update({"test_loss": e["loss"], "test_accuracy": e["accuracy"], "asr": e["asr"],
                                 "asr_all": e["asr_all"], "epsilon": self.exp.epsilon(),
                                 "excluded": " ".join(map(str, self.exp.excluded())),
                                 # Wall clock of the whole round: messages, training, aggregation, evaluation.
                                 "seconds": time.monotonic() - self.round_start})
        _csv(os.path.join(self.out, "history.csv"), self.history)
        log(INFO, "fedsentry round %d: test accuracy %.4f, ASR %s", server_round, e["accuracy"], e["asr"])
        return MetricRecord({k: v for k, v in e.items() if v is not None})

    def write_summary(self) -> dict:
        malicious = set(self.exp.malicious_clients)
        excluded = set(self.exp.excluded())
        last = self.history[-1] if self.history else {}
        summary = {
            "name": self.exp.name,
            "cell": self.exp.cell,
            "deployment": "flower",
            "strategy": self.exp.strategy,
            "rounds": len(self.history),
            "clean_accuracy": last.get("test_accuracy"),
            "asr": last.get("asr"),
            "asr_all": last.get("asr_all"),
            "malicious_clients": sorted(malicious),
            "excluded_clients": sorted(excluded),
            "detection_tpr": len(excluded & malicious) / len(malicious) if malicious else None,
            "detection_fpr": len(excluded - malicious) / (self.exp.num_clients - len(malicious))
            if self.exp.num_clients > len(malicious) else None,
            "epsilon": self.exp.epsilon(),
            "stopped": self.stopped,
            "node_of_partition": {str(k): v for k, v in sorted(self.owners.items())},
        }
        _write_atomic(os.path.join(self.out, "summary.json"), json.dumps(summary, indent=2))
        return summary
