"""Python 3.10 (JetPack 6): no 3.10 interpreter installs here, so its missing `tomllib` is simulated."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PYTHON_310 = textwrap.dedent(
    """
    import importlib, sys
    if TOMLI:  # the backport, installed by the train extra on 3.10: same API as tomllib
        sys.modules["tomli"] = importlib.import_module("tomllib")
    sys.modules.pop("tomllib", None)
    class _No310Tomllib:
        def find_spec(self, name, path=None, target=None):
            if name == "tomllib" or (name == "tomli" and not TOMLI):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, _No310Tomllib())
    """
)


def _python310(code: str, tomli: bool) -> subprocess.CompletedProcess:
    script = f"TOMLI = {tomli}\n" + PYTHON_310 + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_every_command_parser_loads_without_tomllib():
    r = _python310("from edge_askd.cli import main\nmain(['--help'])", tomli=False)
    assert r.returncode == 0, r.stderr
    assert "quickstart" in r.stdout and "distill" in r.stdout


def test_configs_read_with_the_tomli_backport():
    code = """
    from edge_askd.distill.config import load_config
    cfg = load_config("askd-base-dyn", ["lr=2e-5"])
    print(cfg.student, cfg.lr)
    """
    r = _python310(code, tomli=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["base-dyn", "2e-05"]


def test_without_either_a_config_names_the_package_to_install():
    code = """
    import sys
    from edge_askd.cli import main
    sys.exit(main(["distill", "--config", "askd-base-dyn", "--set", "max_steps=1"]))
    """
    r = _python310(code, tomli=False)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "pip install tomli" in r.stderr
