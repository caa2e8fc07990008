"""Shared pytest settings: quiet progress bars and one torch thread.

The models here are tiny: on a 2-core machine, torch's inter-op threading costs more than it saves
(a small MLP fit measured 4-5x faster with one thread when the machine was busy).
"""
import os

import torch

os.environ.setdefault("LABKIT_PROGRESS", "0")
torch.set_num_threads(1)
