"""Installed as ``sitecustomize`` on the Ray nodes of tests/test_ray_label.py: in every worker process,
``Stages.decode`` ends its process at once on a file whose name says ``crashes-the-decoder``, as a
decoder that crashes on a file would. Other files decode as always."""

import importlib.abc
import importlib.util
import os
import sys

MARK = "crashes-the-decoder"


class CrashingDecoder(importlib.abc.MetaPathFinder):
    """Patches ``mer_live.runtime.stages`` as it is first imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "mer_live.runtime.stages":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            decode = module.Stages.decode

            def crashing(self, file):
                if MARK in str(file):
                    os._exit(1)
                return decode(self, file)

            module.Stages.decode = crashing

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, CrashingDecoder())
