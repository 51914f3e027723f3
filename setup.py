"""Every ``volo_deploy`` folder is a package (found, not listed), plus the plugin sources: kept at the
checkout's top-level ``plugins/``, shipped inside the package as ``volo_deploy._plugin_src`` (found there
by ``volo_deploy.plugins_native.plugin_source_dir``). Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["volo_deploy", "volo_deploy.*"], exclude=["*.__pycache__"])
    + ["volo_deploy._plugin_src"],
    package_dir={"volo_deploy._plugin_src": "plugins"},
)
