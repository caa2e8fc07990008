"""Membership inference (Shokri et al. 2017; Carlini et al. 2022).

One lecture concept, split into submodules so that each stays readable:

* :mod:`labkit.membership.shokri`: shadow models, the attack training set, per-class attack models.
* :mod:`labkit.membership.synthesis`: shadow training data: SYNTHESIZE (model-based),
  statistics-based (marginals) and noisy real data.
* :mod:`labkit.membership.lira`: metric attacks (loss, confidence, entropy) and LiRA.

Everything public is re-exported here: ``from labkit.membership import synthesize``. The three
submodules import core modules only, never each other. The attack's evaluation
(``evaluate_attack``, ``membership_set``) is in :mod:`labkit.metrics`, the target setting in
:mod:`labkit.targets`, and the scenarios and tables of the paper in
:mod:`labkit.experiments.membership`.
"""
from .lira import *  # noqa: F401,F403
from .shokri import *  # noqa: F401,F403
from .synthesis import *  # noqa: F401,F403
