"Package metadata comes from settings.ini (nbdev 2 layout); pins live in requirements.txt."
from configparser import ConfigParser
from pathlib import Path
import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
c = cfg["DEFAULT"]
setuptools.setup(
    name=c["lib_name"], version=c["version"], description=c["description"], license="Apache-2.0",
    author=c["author"], keywords=c["keywords"].split(), python_requires=">=" + c["min_python"],
    packages=setuptools.find_packages(include=[c["lib_path"], c["lib_path"] + ".*"]),
    include_package_data=True, zip_safe=False,
    entry_points={"console_scripts": [s.strip() for s in c["console_scripts"].split("\n") if s.strip()],
                  "nbdev": [f'{c["lib_path"]}={c["lib_path"]}._modidx:d']},
)
