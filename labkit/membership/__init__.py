"""Membership inference (Shokri et al. 2017; Carlini et al. 2022).

One lecture concept, split into submodules so that each stays readable:

* :mod:`labkit.membership.shokri`: shadow models, the attack training set, per-class attack models.
* :mod:`labkit.membership.synthesis`: shadow training data: SYNTHESIZE (model-based),
  statistics-based (marginals) and noisy real data.
* :mod:`labkit.membership.lira`: metric attacks (loss, confidence, entropy) and LiRA.

Everything public is re-exported here: ``from labkit.membership import synthesize``.
"""
from .shokri import *  # noqa: F401,F403
from .synthesis import *  # noqa: F401,F403
from .lira import *  # noqa: F401,F403
