"""The model does not depend on training: importing every module of evalsuite.model loads nothing
from evalsuite.training (training imports the model, never the other way round)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import importlib, json, pkgutil, sys
import evalsuite.model as m
names = sorted(i.name for i in pkgutil.iter_modules(m.__path__, "evalsuite.model."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "training": sorted(k for k in sys.modules if k.startswith("evalsuite.training"))}))
"""


def test_importing_every_model_module_loads_no_training_module():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"evalsuite.model.omni", "evalsuite.model.weights", "evalsuite.model.engine"} <= set(out["imported"])
    assert out["training"] == []
