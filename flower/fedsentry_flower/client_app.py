"""A hospital: trains its partition of the experiment (`partition-id` from `--node-config`)
from the global parameters; a malicious partition trains on its poisoned share, exactly as in
`fedsentry run`. Evaluation scores the global model on the hospital's validation share."""

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .common import experiment, from_record, to_record

app = ClientApp()


def _partition(context: Context, exp) -> int:
    try:
        pid = int(context.node_config["partition-id"])
    except (KeyError, ValueError) as e:
        raise ValueError("node config `partition-id`: set it with --node-config 'partition-id=<i>'") from e
    if not 0 <= pid < exp.num_clients:
        raise ValueError(f"node config `partition-id`: {pid} is not among the experiment's {exp.num_clients} hospitals")
    return pid


@app.train()
def train(msg: Message, context: Context) -> Message:
    exp = experiment(context.run_config)
    pid = _partition(context, exp)
    config = msg.content["config"]
    params = from_record(msg.content["arrays"], "arrays")
    new, m = exp.train_client(pid, int(config["server-round"]), params, proximal_mu=float(config.get("proximal-mu", 0.0)))
    metrics = MetricRecord({
        "num-examples": int(m["num_examples"]),
        "partition-id": pid,
        "train-loss": float(m["train_loss"]),
        "train-accuracy": float(m["train_accuracy"]),
    })
    return Message(RecordDict({"arrays": to_record(new), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    exp = experiment(context.run_config)
    pid = _partition(context, exp)
    e = exp.evaluate_client(pid, from_record(msg.content["arrays"], "arrays"))
    metrics = {"partition-id": pid, "num-examples": 0}
    if e is not None:
        metrics.update({"num-examples": int(e["examples"]), "loss": float(e["loss"]), "accuracy": float(e["accuracy"])})
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
