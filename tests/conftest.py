"""Shared test setup.

TRITON_INTERPRET must be set before triton is first imported anywhere in the process, so it is set
here, at collection time, before any test module imports rnnbench's kernels.
"""

import os
import tempfile

os.environ.setdefault("TRITON_INTERPRET", "1")
# the closed forms `params` keeps (rnnbench/bench/param_forms.py): a cache of this session's own,
# so no test reads one that an earlier version of the cells left in ~/.cache
os.environ["RNNBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="rnnbench-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device for device-parametrised tests")


@pytest.fixture
def device(request):
    return request.config.getoption("--device")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def dispatch(monkeypatch):
    """The sweep tests' stand-in measure function (tests/sweep_helpers.py)."""
    from sweep_helpers import fake_dispatch
    return fake_dispatch(monkeypatch)


@pytest.fixture
def suite(request, tmp_path):
    """The test module's SUITE text as a suite file."""
    import textwrap
    p = tmp_path / "tiny.toml"
    p.write_text(textwrap.dedent(request.module.SUITE))
    return p


@pytest.fixture(scope="session")
def cpp_loop():
    """The C++ loop of the fused-cpp backend, built (or loaded from torch's cache) once per session.

    A CI machine without ~/.cache/torch_extensions compiles it here, once; every later use in the
    session (including the `fused` backend, which picks it on a CPU) takes the loaded module.
    Without any C++ compiler the tests that need it skip; a compiler that fails fails them."""
    from rnnbench import fused_cpp
    ok, why = fused_cpp.available()
    if not ok and "no C++ compiler" in why:
        pytest.skip(why)
    assert ok, why
    return fused_cpp.load()


def pytest_terminal_summary(terminalreporter):
    import sys
    mod = sys.modules.get("rnnbench.fused_cpp")
    if mod is not None and mod.build_seconds is not None:
        terminalreporter.write_line(f"fused-cpp: C++ loop built or loaded in {mod.build_seconds:.1f} s "
                                    "(torch_extensions cache)")


@pytest.fixture
def fused_calls(monkeypatch):
    """The keyword arguments rnnbench.fused.fused_forward is called with (impl, fold, gates),
    recorded while the real function runs."""
    import rnnbench.fused as fused
    seen = {}
    real = fused.fused_forward

    def spy(stack, x, **kw):
        seen.update(kw)
        return real(stack, x, **kw)

    monkeypatch.setattr(fused, "fused_forward", spy)
    return seen
