#!/usr/bin/env bash
# Rebuilds three of lie_learn 0.0.2's four Cython extensions against the numpy of the
# active venv (numpy 2.x) from the .pyx sources that ship inside its own
# cp311 wheel, and installs the result (no source change: only re-cythonized
# and re-compiled with language_level=2, as the wheel's own C was).
# Needs: gcc, python3.11 headers, cython>=3, setuptools, numpy.
set -euo pipefail
WORK=$(mktemp -d)
cd "$WORK"
pip download -q --no-deps --only-binary :all: lie_learn==0.0.2 -d dl
mkdir src && cd src
python -m zipfile -e ../dl/lie_learn-0.0.2-*.whl .
# drop the numpy-1 binaries and the C that Cython 3.0.10 generated for them
find lie_learn \( -name '*.so' -o -name '*.c' \) -delete
cat > setup.py <<'PY'
import numpy
from setuptools import setup, find_packages, Extension
from Cython.Build import cythonize
# pinchon_hoggan.pyx is left out: it uses np.int / np.int_t, gone since numpy
# 1.24 / 2.0, so it does not import with the original wheel under numpy>=1.24
# either; escnn never imports it (only spherical_harmonics' block path does).
mods = ["lie_learn.groups.SO3", "lie_learn.spaces.spherical_quadrature",
        "lie_learn.representations.SO3.irrep_bases"]
exts = [Extension(m, [m.replace(".", "/") + ".pyx"], include_dirs=[numpy.get_include()])
        for m in mods]
setup(name="lie_learn", version="0.0.2", packages=find_packages(),
      package_data={"": ["*.npy", "*.pyx"]},
      ext_modules=cythonize(exts, language_level=2, quiet=True),
      install_requires=["numpy", "scipy", "requests"])
PY
pip wheel -q --no-deps --no-build-isolation . -w ../wheel
pip install -q --no-deps --force-reinstall ../wheel/lie_learn-0.0.2-*.whl
cd / && rm -rf "$WORK"
