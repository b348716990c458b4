"""What the ServerApp and the ClientApps share: how an experiment is named in the run
configuration, and the one array a message carries."""

import numpy as np
from flwr.app import ArrayRecord

import fedsentry



def experiment(run_config) -> "fedsentry.Experiment":
    """The run configuration's experiment cell (`experiment`, `only`, `data-root`)."""
    path = str(run_config.get("experiment", ""))
    if not path:
        raise ValueError("run config `experiment`: set it to the experiment file (absolute path)")
    only = [o for o in str(run_config.get("only", "")).split(",") if o]
    data_root = str(run_config.get("data-root", "")) or None
    out = str(run_config.get("out", "runs/flower"))
    return fedsentry.Experiment(path, only=only, data_root=data_root, out=out)


def to_record(params: np.ndarray) -> ArrayRecord:
    return ArrayRecord(numpy_ndarrays=[np.ascontiguousarray(params, dtype=np.float32)])


def from_record(record: ArrayRecord, what: str) -> np.ndarray:
    arrays = record.to_numpy_ndarrays()
    if len(arrays) != 1:
        raise ValueError(f"{what}: expected one flat parameter array, got {len(arrays)}")
    a = arrays[0]
    if a.dtype != np.float32 or a.ndim != 1:
        raise ValueError(f"{what}: expected a flat float32 array, got {a.dtype} of shape {a.shape}")
    return a
