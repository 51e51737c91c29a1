import sys

import pytest

from evalsuite.registry import Registry, UnknownNameError


def test_register_get_and_duplicate():
    reg = Registry("thing")

    @reg.register("alpha")
    class Alpha:
        """first thing"""

    assert reg.get("alpha") is Alpha
    assert reg.help("alpha") == "first thing"
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha")(object)


def test_unknown_name_suggests_near_miss():
    reg = Registry("task")
    reg.register("docqa")(object)
    reg.register("videoqa")(object)
    with pytest.raises(UnknownNameError) as e:
        reg.get("docq")
    msg = str(e.value)
    assert msg.startswith("unknown task 'docq'; did you mean 'docqa'")
    assert "\n" not in msg


def test_lazy_import_registers_on_first_use(tmp_path, monkeypatch):
    import evalsuite.registry as registry_mod

    reg = Registry("model")
    monkeypatch.setattr(registry_mod, "LAZY_TEST_REGISTRY", reg, raising=False)
    (tmp_path / "lazy_backend_mod.py").write_text(
        "import evalsuite.registry as r\nIMPORTED = True\nr.LAZY_TEST_REGISTRY.register('fake')(int)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg.lazy("fake", "lazy_backend_mod", help="lazy one")
    assert "fake" in reg
    assert "lazy_backend_mod" not in sys.modules  # listing a name imports nothing
    assert reg.get("fake") is int
    assert sys.modules["lazy_backend_mod"].IMPORTED
    sys.modules.pop("lazy_backend_mod", None)


def test_a_name_whose_optional_package_is_missing_stays_known_and_says_which(tmp_path, monkeypatch):
    from evalsuite.catalog import _module_exists
    from evalsuite.registry import UnavailableError

    pkg = tmp_path / "needs_pkg_mod"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import not_installed_pkg_xyz.api\n")  # as evalsuite.lmeval imports lm_eval
    (pkg / "task.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _module_exists("needs_pkg_mod.task")  # listed, not hidden as if it were not part of the install
    assert not _module_exists("no_such_mod_xyz.task")
    reg = Registry("task")
    reg.lazy("needs", "needs_pkg_mod.task")
    with pytest.raises(UnavailableError) as e:
        reg.get("needs:arg")
    assert str(e.value) == ("task 'needs' needs the Python package 'not_installed_pkg_xyz', which is not installed "
                            "(evalsuite's 'dev' extra installs every optional one)")
    for mod in [m for m in sys.modules if m.startswith("needs_pkg_mod")]:
        sys.modules.pop(mod)


def test_alias_and_argument_split():
    reg = Registry("model")
    reg.register("reference")(dict)
    reg.alias("fp4", "reference:fp4")
    assert reg.split("fp4") == ("reference", "fp4")
    assert reg.get("fp4") is dict
    assert reg.split("replay:/a/b:c.jsonl") == ("replay", "/a/b:c.jsonl")
    assert "fp4" in reg.names()


def test_global_catalog_lists_builtin_backends():
    from evalsuite.registry import BACKENDS

    assert {"mock", "replay"} <= set(BACKENDS.names())


def test_task_args_given_from_python_must_have_the_defaults_type(toy):
    from evalsuite.registry import TASKS
    from evalsuite.task import TaskArgError

    ToyTask = TASKS.get("toy")

    assert ToyTask(n=5).args["n"] == 5 and ToyTask(n="5").args["n"] == 5
    with pytest.raises(TaskArgError, match=r"^task argument toy.n expects int \(like \d+\), got True$"):
        ToyTask(n=True)  # a bool is not a count (it passed as 1 sample)
    with pytest.raises(TaskArgError, match=r"^task argument toy.n expects int \(like \d+\), got 2.5$"):
        ToyTask(n=2.5)


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", float("nan"), float("inf")])
def test_a_float_task_arg_must_be_finite(value):
    from evalsuite.results import dumps
    from evalsuite.task import Task, TaskArgError

    class Clip(Task):
        name = "clip"
        default_args = {"fps": 0.5}

    assert Clip(fps="0.25").args["fps"] == 0.25 and Clip(fps=2).args["fps"] == 2
    assert dumps(Clip(fps="1e3").args) == '{"fps": 1000.0}'
    with pytest.raises(TaskArgError) as e:
        Clip(fps=value)  # results.json would record it as null
    assert str(e.value) == f"task argument clip.fps expects a finite number, got {value!r}"


@pytest.mark.parametrize("arg, message", [
    ("dealy=0.05", "mock options: unknown 'dealy'; expected KEY=VALUE with KEY one of letter, fail, delay"),
    ("delay=abc", "mock options: delay/ttft/itl expect seconds"),
    ("delay=-1", "mock options: delay, ttft and itl must be finite seconds >= 0"),
    ("ttft=nan", "mock options: delay, ttft and itl must be finite seconds >= 0"),
])
def test_mock_options_are_checked(arg, message):
    from evalsuite.backend import BackendConfigError
    from evalsuite.backends.mock import MockBackend

    with pytest.raises(BackendConfigError, match="^" + message.replace("(", r"\(")):
        MockBackend(arg)
    assert MockBackend("delay=0.01,letter=B,fail=x").delay == 0.01


@pytest.mark.parametrize("task", ["videoqa", "videomme", "longvideobench"])
def test_an_evs_rate_outside_0_1_is_one_line_before_any_sample(task):
    """The video encoder refuses q outside [0, 1) for every video: one line when the task is built,
    not one errored sample per video."""
    from evalsuite.registry import TASKS
    from evalsuite.task import TaskArgError

    with pytest.raises(TaskArgError, match=rf"^task argument {task}\.evs_q expects an EVS pruning rate in \[0, 1\), got 2\.0$"):
        TASKS.get(task)(evs_q="2")
    assert TASKS.get(task)(evs_q="0.75").args["evs_q"] == 0.75
