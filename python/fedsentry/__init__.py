"""fedsentry for Python: experiments, federated clients, aggregation rules and attacks.

Parameters are flat contiguous ``float32`` numpy arrays (a model's tensors in its
``state_dict`` order, flattened and concatenated); reports are plain dicts. Heavy calls
release the GIL.

* :class:`Experiment` — one cell of an experiment file as a federation: ``train_client``
  (a hospital's local training; malicious ids run the experiment's attack),
  ``aggregate`` with the experiment's rule, ``evaluate`` (clean accuracy and ASR),
  ``adversarial`` (FGSM / BIM / PGD examples against any parameters).
* :class:`Aggregator` — any fedsentry rule (FedAvg, Krum, Multi-Krum, median, trimmed mean,
  Bulyan, norm clipping, FLTrust, FoolsGold, FLAME, MAD, DP-FedAvg, NbAFL) on its own, with
  its state kept between rounds (``state`` / ``restore`` across processes).
* :func:`poison_updates` — model poisoning (e.g. scaling) applied to chosen updates.

CPU numerics: like ``fedsentry run``, the package pins libtorch, oneDNN and MKL to their AVX2
code paths (the same numbers on every x86-64 CPU with AVX2) unless
``FEDSENTRY_CPU_KERNELS=native``. The pins only take effect when fedsentry is imported before
anything runs a torch operation.
"""

import os as _os
import sys as _sys

# Must equal fedsentry::numerics::PINS (the package's tests compare them).
_PINS = (
    ("ATEN_CPU_CAPABILITY", "avx2"),
    ("ONEDNN_MAX_CPU_ISA", "AVX2"),
    ("MKL_CBWR", "AVX2"),
)

if _os.environ.get("FEDSENTRY_CPU_KERNELS", "portable") == "portable":
    for _k, _v in _PINS:
        _os.environ.setdefault(_k, _v)
    CPU_KERNELS = "portable"
else:
    CPU_KERNELS = "native"
_TORCH_WAS_IMPORTED = "torch" in _sys.modules

# The extension links against torch's own libtorch: load it first, so that one libtorch is
# mapped and shared with the user's torch (one thread pool, one global RNG; fedsentry seeds
# its own generators and never reseeds torch's global one).
import torch as _torch  # noqa: E402,F401

from ._native import (  # noqa: E402
    Aggregator,
    Experiment,
    __version__,
    cpu_kernel_pins,
    poison_updates,
)

__all__ = [
    "Aggregator",
    "Experiment",
    "poison_updates",
    "cpu_kernel_pins",
    "CPU_KERNELS",
    "__version__",
]
