"""Build the native extension and place pyward_boot.pth; everything else lives in pyproject.toml."""
import zipfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.editable_wheel import editable_wheel

native = Path("src/pyward/_native")
BOOT_PTH = Path("src/pyward_boot.pth")


class EditableWheelWithBoot(editable_wheel):
    """An editable install gets pyward_boot.pth too (a regular wheel gets it from package-data)."""

    def run(self):
        super().run()
        for wheel in Path(self.dist_dir).glob("*editable*.whl"):
            with zipfile.ZipFile(wheel, "a") as archive:
                archive.write(BOOT_PTH, BOOT_PTH.name)


setup(
    ext_modules=[
        Extension(
            "pyward._native._pyward",
            sources=sorted(str(p) for p in native.glob("*.c")),
            depends=sorted(str(p) for p in native.glob("*.h")),
            extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            # without a C compiler pyward still installs and runs degraded (pure-Python audit hook):
            # it says so on every run, and `pyward run` names what is missing
            optional=True,
        )
    ],
    cmdclass={"editable_wheel": EditableWheelWithBoot},
)
