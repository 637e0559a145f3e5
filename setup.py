"""Build hook for the fused DDC op (edgeseg._C); package metadata lives in pyproject.toml.

Filled in by the cpp_ext work (issue 4): until then the package installs as pure Python.
"""

from setuptools import setup

setup()
