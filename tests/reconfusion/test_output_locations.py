"""Every command checks its output location before any work: an output that cannot be created or
written gives one line naming the flag and exit status 2, and nothing is computed first.

Root ignores file modes, so an unwritable location is made in two ways: ``--out`` below a regular
file (cannot be created, by anyone), and an existing folder that is read-only (mode 0555, or for
root the immutable attribute; an unprivileged child process is no option here, the interpreter
itself may be private to root).
"""

import os
import subprocess

import pytest

from reconfusion.app.cli import main
from tests.helpers.paths import SHARED_DATA


def commands(bad: str, data: str) -> dict[str, list[str]]:
    return {
        "reconstruct": ["reconstruct", "--data", data, "--views", "3", "--out", bad],
        "demo": ["demo", "--out", bad],
        "benchmark": ["benchmark", data, "--out", bad],
        "evaluate": ["evaluate", "--checkpoint", "/nonexistent-run", "--out", bad],
        "render-video": ["render-video", "--checkpoint", "/nonexistent-run", "--out", os.path.join(bad, "v.gif")],
        "train-prior": ["train-prior", "--data", "co3d:/nonexistent-data", "--tiny", "--out", bad],
    }


@pytest.mark.parametrize("command", ["reconstruct", "demo", "benchmark", "evaluate", "render-video", "train-prior"])
def test_an_output_that_cannot_be_created_is_refused_first(tmp_path, capsys, command):
    (tmp_path / "a_file").write_text("")
    bad = str(tmp_path / "a_file" / "out")
    # data that does not exist: had the command started its work, it would fail on the data instead
    argv = commands(bad, str(SHARED_DATA / "fern"))[command]
    if command == "reconstruct":
        argv[2] = "/nonexistent-data"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad} cannot be created: {tmp_path / 'a_file'} is a file" in err[0], err
    assert "--out" in err[0]


@pytest.fixture
def read_only_dir(tmp_path):
    """An existing folder this process cannot write: mode 0555 for a normal user; for root (who
    ignores modes) the immutable attribute (``chattr +i``), else the test is skipped."""
    path = tmp_path / "read_only"
    path.mkdir()
    root = os.geteuid() == 0
    if root:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"root, and chattr +i is not available here: {done.stderr.decode().strip()}")
    else:
        path.chmod(0o555)
    yield str(path)
    if root:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o755)


@pytest.mark.parametrize("command", ["reconstruct", "demo", "benchmark", "evaluate", "render-video", "train-prior"])
def test_an_existing_read_only_folder_is_refused_first(read_only_dir, capsys, command):
    argv = commands(read_only_dir, str(SHARED_DATA / "fern"))[command]
    if command == "reconstruct":
        argv[2] = "/nonexistent-data"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "not writable" in err[0], err
    assert os.listdir(read_only_dir) == []


def test_render_video_refuses_an_unknown_extension_before_loading(capsys, tmp_path):
    assert main(["render-video", "--checkpoint", "/nonexistent-run", "--out", str(tmp_path / "v.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unsupported video extension '.txt'" in err[0] and ".mp4, .gif" in err[0]


def test_reconstruct_resume_without_a_checkpoint_is_refused(capsys, tmp_path):
    argv = ["reconstruct", "--data", "/nonexistent-data", "--views", "3", "--out", str(tmp_path), "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no checkpoint to resume in {tmp_path}" in err[0]
