"""Lowering: from placed ops to kernel calls that fit, run on an engine and placed in time.

* :mod:`.calls`: which kernel runs an op, with which sizes, how many times, how it splits;
* :mod:`.choose`: the fastest fitting kernel, algorithm and chunking per op (:class:`Lowerer`);
* :mod:`.execute`: engine runs (``des`` memoised, ``analytic`` closed forms);
* :mod:`.transfer`: tensors moving between regions, as fabric programs;
* :mod:`.schedule`: sequential, pipeline and weight-streaming timelines;
* :mod:`.simulate`: all of the above for one placed graph;
* :mod:`.assemble`: mesh-sized arrays, the per-op table and the run's metrics.
"""

from wse_sim.lowering.choose import Choice, Lowerer
from wse_sim.lowering.simulate import Simulation, simulate

__all__ = ["Choice", "Lowerer", "Simulation", "simulate"]
