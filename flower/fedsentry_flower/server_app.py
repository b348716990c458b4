"""The server: the experiment's rule on real hospitals' updates, clean accuracy and ASR every
round, history.csv / defense.csv / summary.json in the run config's `out`."""

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from .common import experiment, to_record
from .strategy import FedsentryStrategy

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    exp = experiment(context.run_config)
    out = str(context.run_config.get("out", "runs/flower"))
    strategy = FedsentryStrategy(exp, out)
    strategy.start(
        grid=grid,
        initial_arrays=to_record(exp.initial_params()),
        num_rounds=exp.rounds,
        evaluate_fn=strategy.evaluate,
    )
    strategy.write_summary()
