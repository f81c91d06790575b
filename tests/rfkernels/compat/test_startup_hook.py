"""``python -m rfkernels.compat enable|disable|status``: the .pth startup hook switches an unmodified
script only when RFKERNELS_COMPAT is set, imports nothing at startup, and is gone after disable.
The script runs in subprocesses whose user site-packages is a temporary folder (PYTHONUSERBASE)."""

import os
import subprocess
import sys

import pytest

from rfkernels.compat import startup_hook
from rfkernels.compat.__main__ import main
from tests.helpers.paths import ROOT

# an "unmodified console script": it never imports rfkernels itself
SCRIPT = """
import sys
hooked = any(getattr(f, "__name__", "") == "RfkernelsCompatFinder" for f in sys.meta_path)
print(hooked, "torch" in sys.modules)
if hooked:
    import nerfacc, tinycudann
    from nerfacc.estimators.occ_grid import OccGridEstimator
    print(nerfacc.__name__, tinycudann.__name__, OccGridEstimator.__module__)
"""


def _run(tmp_path, *args, compat=None):
    env = {k: v for k, v in os.environ.items() if k not in ("RFKERNELS_COMPAT", "PYTHONNOUSERSITE")}
    env.update(PYTHONUSERBASE=str(tmp_path / "userbase"), PYTHONPATH=str(ROOT))
    if compat is not None:
        env["RFKERNELS_COMPAT"] = compat
    out = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(sys.prefix != sys.base_prefix, reason="a virtualenv has no user site-packages")
def test_hook_switches_an_unmodified_script_only_with_the_variable(tmp_path, capsys):
    script = tmp_path / "console_script.py"
    script.write_text(SCRIPT)
    (user_site,) = _run(tmp_path, "-c", "import site; print(site.getusersitepackages())")
    for command, said in (("status", "not installed"), ("enable", "written"), ("status", "installed at")):
        with pytest.raises(SystemExit) as done:  # python -m rfkernels.compat <command> --site DIR
            main([command, "--site", user_site])
        assert done.value.code == 0 and said in capsys.readouterr().out
    assert _run(tmp_path, str(script)) == ["False", "False"]  # variable unset: no hook, nothing imported
    assert _run(tmp_path, str(script), compat="0") == ["False", "False"]
    on = _run(tmp_path, str(script), compat="1")
    assert on[:2] == ["True", "False"]  # hooked, yet torch is imported only by `import nerfacc`
    occ_grid = "rfkernels.compat.nerfacc.estimators.occ_grid"
    assert on[2:] == ["rfkernels.compat.nerfacc", "rfkernels.compat.tcnn", occ_grid]
    assert startup_hook.disable(user_site)
    assert _run(tmp_path, str(script), compat="1") == ["False", "False"]


def test_site_option_and_bad_options(tmp_path):
    path = startup_hook.enable(str(tmp_path))
    assert open(path).read() == startup_hook.HOOK_LINE and path.endswith(".pth")
    assert "installed" in startup_hook.status(str(tmp_path))
    assert startup_hook.disable(str(tmp_path)) == path and not os.path.exists(path)
    assert startup_hook.disable(str(tmp_path)) is None
    with pytest.raises(SystemExit, match="--user or --site"):
        startup_hook.main("enable", ["--bogus"])
