"""Everything is declared in setup.cfg; this file only adds the VOT start-up hook to the build.

The hook is one line in ``lorat_tracker_vot_fixes.pth`` (see integrations/vot/hook.py):
a ``.pth`` file works only at the top of site-packages, which package data cannot reach, so
``build_py`` copies it there - into the wheel's root for ``pip install .`` and into the editable
wheel's root for ``pip install -e .`` (setuptools >= 64, PEP 660).
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = os.path.join("integrations", "vot", "lorat_tracker_vot_fixes.pth")


class build_py_with_vot_hook(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            # PEP 660: setuptools' editable_wheel points install_lib at the unpacked editable wheel,
            # whose files all go into the wheel; build_lib is a scratch folder it leaves out.
            target = self.get_finalized_command("install").install_lib
        else:
            target = self.build_lib
        self.copy_file(PTH, os.path.join(target, os.path.basename(PTH)), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, os.path.basename(PTH)))
        return outputs


setup(cmdclass={"build_py": build_py_with_vot_hook})
