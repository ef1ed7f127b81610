"""A clone stands on its own: in a fresh folder with no `shared` beside it and no write access
for others on its parent, `make test-fast` passes."""

import re

import pytest


@pytest.mark.timeout(1300)
def test_a_fresh_clone_passes_make_test_fast(clone):
    assert not (clone.path.parent / "shared").exists()
    assert clone.path.parent.stat().st_mode & 0o022 == 0
    done = clone.make("test-fast", {}, timeout_s=1200)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "bootstrap: installing" not in output  # the session's venv, not a second install
    # pytest's summary, not any "failed" (a test may be named for what it checks about failures)
    assert re.search(r"\d+ passed", output) and not re.search(r"\d+ failed", output), output[-3000:]
