"""The server: FedAvg's sampling and messages, fedsentry's Krum (f = 1) as the aggregation."""

import json
import os

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedsentry.flower import RobustStrategy

from .client_app import model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rounds = int(context.run_config["rounds"])
    out = str(context.run_config["out"])
    nodes = len(list(grid.get_node_ids()))
    strategy = RobustStrategy({"rule": "krum", "f": 1}, clients=nodes, rounds=rounds,
                              fraction_train=1.0, fraction_evaluate=0.0,
                              min_train_nodes=nodes, min_available_nodes=nodes)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model().state_dict()), num_rounds=rounds)
    os.makedirs(out, exist_ok=True)
    final = {k: v.tolist() for k, v in result.arrays.to_torch_state_dict().items()}
    with open(os.path.join(out, "decisions.json"), "w") as f:
        json.dump({"decisions": strategy.decisions, "partition_of_client": strategy.partition_of_client,
                   "final": final}, f, indent=1)
