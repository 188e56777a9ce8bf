"""One command-line vocabulary (issue 16, Done-when 3): every command walked, its options checked.

Shared concepts have one spelling everywhere (-j/--workers, --batch-size, --force, -c/--config,
-o/--output, NAME=FILE signals); a short option means one thing in every command; every --help
has an example, plain metavars and defaults shown one way; usage errors exit 2 with the usage
line and a "did you mean" hint, never "internal error".
"""

from __future__ import annotations

import re

import pytest
import typer

from hepad.cli import app, main
from hepad.cli._app import format_number


def _walk(group, path=()):
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):
            yield from _walk(cmd, path + (name,))
        else:
            yield path + (name,), cmd


COMMANDS = dict(_walk(typer.main.get_command(app)))
NAMES = [" ".join(p) for p in COMMANDS]

#: concept (parameter name) -> the one spelling every command uses
CANONICAL = {
    "workers": {"-j", "--workers"},
    "batch_size": {"--batch-size"},
    "config": {"-c", "--config"},
    "force": {"--force"},
    "output": {"-o", "--output"},
    "signal": {"-s", "--signal"},
    "background": {"-b", "--background"},
    "format": {"-f", "--format"},
    "key": {"-k", "--key"},
    "drop_invalid": {"--drop-invalid"},
    "chunk_size": {"--chunk-size"},
    "max_events": {"--max-events"},
    "scheduler": {"--scheduler"},
    "seed": {"--seed"},
}
#: commands whose output is a positional argument (convert SOURCE OUTPUT)
POSITIONAL_OUTPUT = {"convert"}
#: commands that write nothing, or reuse what exists by design
NO_FORCE = {"inspect", "detectors", "stream", "dataset build"}


def test_every_command_is_walked():
    assert {"score", "train", "evaluate", "compare", "report", "generate", "dataset build", "convert",
            "inspect", "export onnx", "export hls", "export hls-scan", "trigger", "stream",
            "detectors"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_shared_options_have_one_spelling(name):
    cmd = COMMANDS[tuple(name.split())]
    opts = {p.name: set(p.opts) | set(p.secondary_opts) for p in cmd.params if not p.opts[0].isalpha()}
    for concept, spelling in CANONICAL.items():
        if concept in opts:
            assert opts[concept] == spelling, f"{name}: {concept} is {sorted(opts[concept])}, not {sorted(spelling)}"
    assert "batch" not in opts and "n_workers" not in opts
    writes = "output" in opts or name in POSITIONAL_OUTPUT or name == "generate"
    if writes and name not in NO_FORCE:
        assert "force" in opts, f"{name} writes an output but has no --force"


def test_a_short_option_means_one_thing_everywhere():
    meaning: dict[str, set[str]] = {}
    for cmd in COMMANDS.values():
        for p in cmd.params:
            longs = [o for o in p.opts if o.startswith("--")]
            for o in p.opts:
                if re.fullmatch(r"-[A-Za-z]", o):
                    meaning.setdefault(o, set()).update(longs)
    clash = {k: v for k, v in meaning.items() if len(v) > 1}
    assert not clash, clash


@pytest.mark.parametrize("name", NAMES)
def test_help_has_an_example_plain_metavars_and_plain_defaults(capsys, name):
    code = main([*name.split(), "--help"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Example: hepad " + name.split()[0] in out, out
    assert not re.search(r"<(path|str|int|float|bool|list)", out), out
    assert not re.search(r"\d{5,}\.0\b", out), out  # 40e6, never 40000000.0
    assert "[default: (" not in out


@pytest.mark.parametrize("name", NAMES)
def test_signal_options_take_name_equals_file(name):
    cmd = COMMANDS[tuple(name.split())]
    for p in cmd.params:
        if p.name == "signal" and p.multiple:  # labelled samples (train's --signal is one file)
            assert "NAME=FILE" in (p.help or "") and "just FILE" in (p.help or ""), name


def test_numbers_are_shown_one_way():
    assert [format_number(x) for x in (40e6, 1e6, 1000.0, 0.0, 1e-5, 0.5, 250000.0)] == [
        "40e6", "1e6", "1000", "0", "1e-5", "0.5", "250000"]


# ------------------------------------------------------------------ usage errors
def _usage(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    cap = capsys.readouterr()
    return code, cap.err


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_option_is_a_usage_error(capsys, name):
    code, err = _usage(capsys, *name.split(), "--no-such-thing")
    assert code == 2
    assert err.splitlines()[0].startswith(f"Usage: hepad {name}"), err
    assert "No such option: --no-such-thing" in err and "internal error" not in err


@pytest.mark.parametrize("args, suggestion", [
    (["train", "--detecter", "ae"], "--detector"),
    (["score", "m", "x.h5", "--ouput", "s.h5"], "--output"),
    (["evaluate", "m", "--backgrund", "b.h5"], "--background"),
    (["scroe"], "score"),
])
def test_a_typo_gets_a_did_you_mean(capsys, args, suggestion):
    code, err = _usage(capsys, *args)
    assert code == 2 and "Usage: hepad" in err
    assert f"Did you mean {suggestion}" in err or f"Did you mean '{suggestion}'" in err, err
    assert "internal error" not in err


@pytest.mark.parametrize("args, what", [
    (["train"], "Missing option '--output'"),
    (["score", "model"], "Missing argument 'FILES...'"),
    (["export", "onnx"], "Missing argument 'MODEL'"),
    (["report", "a", "b"], "unexpected extra argument"),
])
def test_missing_or_extra_arguments_are_usage_errors(capsys, args, what):
    code, err = _usage(capsys, *args)
    assert code == 2 and err.startswith(f"Usage: hepad {args[0]}")
    assert what in err and "internal error" not in err


def test_compare_takes_name_equals_model(capsys, tiny_dataset, tmp_path):
    import json

    import hepad

    hepad.train("mahalanobis", tiny_dataset["sm_train"], output=tmp_path / "model_m")
    code = main(["compare", f"maha={tmp_path / 'model_m'}", "-b", str(tiny_dataset["sm_test"]),
                 "-s", f"a4l={tiny_dataset['ato4l']}", "-o", str(tmp_path / "cmp"), "--no-plots"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    rows = json.loads((tmp_path / "cmp" / "metrics.json").read_text())["rows"]
    assert {r["detector"] for r in rows} == {"maha"} and {r["signal"] for r in rows} == {"a4l"}


def test_help_paragraphs_are_reflowed_not_cut_at_the_source_wrap(capsys):
    main(["score", "--help"])
    lines = capsys.readouterr().out.splitlines()
    # the source wraps after "source_file and": a reflowed paragraph does not break there
    assert not any(ln.rstrip().endswith("source_file and") for ln in lines)
    from hepad.cli._app import _reflow

    assert _reflow("A b\n    c d.\n\n    - item\n    - item two\n\n    Example: x") == "A b c d.\n\n- item\n- item two\n\nExample: x"


@pytest.mark.parametrize("args, new", [(["score", "-w", "2", "m", "x.h5"], "-j/--workers"),
                                       (["stream", "x.h5", "--to", "zmq:tcp://127.0.0.1:1", "--batch", "5"], "--batch-size")])
def test_a_renamed_option_says_its_new_spelling(capsys, args, new):
    code, err = _usage(capsys, *args)
    assert code == 2 and f"It is now {new}" in err
