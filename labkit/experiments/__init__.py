"""Experiments: what combines labkit's algorithms into the sweeps, scenarios and tables that the book,
the labs and the benchmarks print.

The layers of labkit, imports pointing down only:

* core (``utils``, ``data``, ``models``, ``train``, ``ensemble``, ``targets``, ``oracle``,
  ``metrics``, ``plots``, ``grading``);
* one lecture module per concept (``extraction``, ``watermark``, ``inversion``,
  ``memorization``, ``membership.shokri``, ``membership.synthesis``, ``membership.lira``),
  importing core modules only;
* this package, which may import both.
"""
