"""Checks of the installed fedsentry package against the command line's own numbers.

Usage: python test_package.py <repo root> <history.csv of `fedsentry run configs/flower_backdoor.toml`>
"""
import csv
import json
import sys

import numpy as np

import fedsentry

root, history_csv = sys.argv[1], sys.argv[2]
config = f"{root}/configs/flower_backdoor.toml"


def expect_error(fn, *needles):
    try:
        fn()
    except ValueError as e:
        for n in needles:
            assert n in str(e), f"{n!r} not in {e}"
        return
    raise AssertionError(f"no error; expected one naming {needles}")


# The package pins the same CPU kernels as `fedsentry run`.
assert list(fedsentry._PINS) == [tuple(p) for p in fedsentry.cpu_kernel_pins()]
assert fedsentry.CPU_KERNELS == "portable"

# Driven round by round through the package, the federation gives the command line's
# history.csv bit for bit (floats compared by their shortest repr).
exp = fedsentry.Experiment(config, out="/tmp/fedsentry-py-run")
assert (exp.num_clients, exp.rounds, exp.malicious_clients) == (4, 3, [0, 3]), exp.malicious_clients
rows = list(csv.DictReader(open(history_csv)))
params = exp.initial_params()
assert params.dtype == np.float32 and params.ndim == 1
for r in range(1, exp.rounds + 1):
    plan = exp.configure(r)
    updates = []
    for cid in plan["clients"]:
        p, m = exp.train_client(cid, r, params, proximal_mu=plan["proximal_mu"])
        assert m["malicious"] == (cid in exp.malicious_clients)
        updates.append((cid, p, m["num_examples"]))
    updates = exp.poison_updates(r, params, updates)
    params, report = exp.aggregate(r, params, updates)
    ev = exp.evaluate(params)
    row = rows[r - 1]
    assert int(row["clients_fit"]) == len(plan["clients"]), (row, plan)
    for key, ours in (("test_loss", ev["loss"]), ("test_accuracy", ev["accuracy"]), ("asr", ev["asr"])):
        assert repr(float(row[key])) == repr(ours), (r, key, row[key], ours)
    assert sorted(report["excluded"]) == exp.excluded()
print("package == fedsentry run:", [(r["round"], r["test_accuracy"], r["asr"]) for r in rows])

# An Aggregator's state survives a save/restore into a fresh one (a new process).
rng = np.random.default_rng(0)
ups = [[(c, rng.normal(size=50).astype(np.float32) * (5 if c == 3 else 1), 10) for c in range(5)] for _ in range(3)]
g = np.zeros(50, np.float32)
a = fedsentry.Aggregator({"rule": "mad", "activation_round": 1}, clients=5, rounds=3, seed=3)
a.aggregate(1, g, ups[0])
b = fedsentry.Aggregator('rule = "mad"\nactivation_round = 1', clients=5, rounds=3, seed=3)
b.restore(a.state())
pa, ra = a.aggregate(2, g, ups[1])
pb, rb = b.aggregate(2, g, ups[1])
assert np.array_equal(pa, pb) and ra == rb

# Model poisoning on numpy arrays.
scaled = fedsentry.poison_updates({"kind": "scaling", "factor": 3.0}, g + 1, [(0, g + 2, 1), (1, g + 2, 1)], [True, False])
assert np.allclose(scaled[0][1], 4.0) and np.allclose(scaled[1][1], 2.0)

# Evasion: FGSM stays within its budget.
n = 4
x = np.full((n, 1, 32, 32), 0.5, np.float32)
adv = exp.adversarial(params, x, [0, 1, 2, 3], {"kind": "fgsm", "eps": 0.03})
assert adv.shape == (n * 32 * 32,) and np.abs(adv - x.ravel()).max() <= 0.03 + 1e-6

# Bad inputs are named errors.
expect_error(lambda: fedsentry.Aggregator({"rule": "krum", "f": 1}, clients=4), "krum", "2f + 3")
expect_error(lambda: fedsentry.Aggregator({"rule": "no_such_rule"}, clients=4), "rule")
expect_error(lambda: fedsentry.Experiment(f"{root}/nowhere.toml"), "nowhere.toml")
expect_error(lambda: exp.train_client(9, 1, params), "no client 9")
expect_error(lambda: a.aggregate(3, g, [(0, g)]), "updates[0]")
expect_error(lambda: exp.adversarial(params, x, [0, 1], {"kind": "fgsm", "eps": 0.03}), "images")
expect_error(lambda: exp.adversarial(params, x, [0, 1, 2, 3], {"kind": "fgsm", "eps": 2}), "attack.eps")
print("package checks passed")
