"""minprune: neural-network pruning, taught by doing it, in NumPy + Numba.

    import minprune as mp
    model = mp.models.lenet5()
    (x, y), test = mp.data.load_mnist5k()
    mp.train.fit(model, (x, y), epochs=5)
    mp.prune.prune(model, 0.9, criterion="magnitude", scope="global")

Importing changes no process-wide setting; `mp.performance.tune()` opts in to the measured ones.
"""
from . import data, exercises, experiments, models, nn, optim, performance, plots, prune, train
from .autograd import no_grad
from .nn import load, save
from .tensor import Tensor, tensor

__version__ = "0.1.0"
__all__ = ["Tensor", "tensor", "no_grad", "nn", "optim", "data", "models", "train", "prune", "plots",
           "experiments", "exercises", "performance", "save", "load"]
