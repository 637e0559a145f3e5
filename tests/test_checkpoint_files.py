"""What edgeseg trusts from a ``.pt`` file: anything but a sound bundle is one line naming the file.

Each damaged or hostile file is refused by :func:`edgeseg.checkpoint.load_model` (and so by every
command that takes ``--model``) with an :class:`EdgesegError` whose message starts with the path;
a pickled payload is never run.
"""

from __future__ import annotations

import errno
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from edgeseg.checkpoint import load_card, load_model, read_checkpoint
from edgeseg.cli import main
from edgeseg.errors import EdgesegError

DEMO = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "demo_dbmsnet.pt"


class _Payload:
    """Unpickling this runs ``touch <marker>``: the attack weights_only=True must stop."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _text(path: Path, tmp: Path) -> None:
    path.write_text("hello world\n")  # was a KeyError from inside pickle


def _short_text(path: Path, tmp: Path) -> None:
    path.write_text("abc")  # was an IndexError (pop from empty list)


def _empty(path: Path, tmp: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path, tmp: Path) -> None:
    data = DEMO.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zip_not_torch(path: Path, tmp: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "a zip archive, but not one torch.save wrote")


def _raw_pickle_payload(path: Path, tmp: Path) -> None:
    path.write_bytes(pickle.dumps(_Payload(tmp / "pwned")))


def _torch_payload(path: Path, tmp: Path) -> None:
    torch.save({"card": {}, "state_dict": {"w": _Payload(tmp / "pwned")}}, path)


BROKEN: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "text": (_text, "not a complete torch.save archive"),
    "short-text": (_short_text, "not a complete torch.save archive"),
    "empty": (_empty, "an empty file"),
    "truncated": (_truncated, "not a complete torch.save archive"),
    "zip-not-torch": (_zip_not_torch, "not a readable edgeseg checkpoint"),
    "raw-pickle-payload": (_raw_pickle_payload, "not a complete torch.save archive"),
    "torch-pickle-payload": (_torch_payload, "refused: .* holds Python objects .*GLOBAL posix.system"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_file_is_one_line_naming_it(kind: str, tmp_path: Path) -> None:
    make, reason = BROKEN[kind]
    path = tmp_path / f"{kind}.pt"
    make(path, tmp_path)
    with pytest.raises(EdgesegError, match=rf"^{path}: .*{reason}") as info:
        load_model(path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "pwned").exists()  # the payload never ran


def test_unreadable_file_says_so(tmp_path: Path, rt_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.checkpoint

    def denied(path: Any, *args: Any) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    # Tests run as root here, where chmod 000 does not stop a read.
    monkeypatch.setattr(edgeseg.checkpoint, "open", denied, raising=False)
    expected = rf"^{rt_bundle}: cannot read this edgeseg checkpoint \(Permission denied\)"
    with pytest.raises(EdgesegError, match=expected):
        load_model(rt_bundle)


def test_training_checkpoint_reader_names_what_it_expected(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    _text(path, tmp_path)
    with pytest.raises(EdgesegError, match=rf"^{path}: not a readable training checkpoint"):
        read_checkpoint(path, "training checkpoint")


def test_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.pt"
    _text(path, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--model", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: ") and "\n" not in err


def _bundle(tmp_path: Path, rt_bundle: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    obj = torch.load(rt_bundle, weights_only=True)
    obj = edit(obj) or obj
    path = tmp_path / "edited.pt"
    torch.save(obj, path)
    return path


def _drop_state_dict(obj: dict[str, Any]) -> None:
    del obj["state_dict"]


def _bare_state_dict(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["state_dict"]


def _state_dict_not_tensors(obj: dict[str, Any]) -> None:
    obj["state_dict"] = {k: v.tolist() for k, v in obj["state_dict"].items()}


def _more_classes(obj: dict[str, Any]) -> None:
    obj["card"]["num_classes"] = 5  # the saved classifier has 3 outputs
    obj["card"]["class_names"] = []


def _missing_key(obj: dict[str, Any]) -> None:
    obj["state_dict"].popitem()


def _unexpected_key(obj: dict[str, Any]) -> None:
    obj["state_dict"]["extra.weight"] = torch.zeros(1)


def _zero_std(obj: dict[str, Any]) -> None:
    obj["card"]["std"] = [0.2, 0.0, 0.2]


def _unknown_preset(obj: dict[str, Any]) -> None:
    obj["card"]["preset"] = "no_such_preset"


EDITS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "no-state-dict": (_drop_state_dict, r"not an edgeseg checkpoint \(no 'card'/'state_dict'"),
    "bare-state-dict": (_bare_state_dict, r"not an edgeseg checkpoint \(no 'card'/'state_dict'"),
    "values-not-tensors": (_state_dict_not_tensors, "'state_dict' must map parameter names to tensors"),
    "wrong-shapes": (_more_classes, r"do not match preset 'dbmsnet_r18_os16' \(\d+ of another shape, e\.g\. "
                                    r"'.+' \(3, .*\) in the file, \(5, .*\) in the model\)"),
    "missing-key": (_missing_key, r"1 missing, e\.g\. '.+'"),
    "unexpected-key": (_unexpected_key, r"1 unexpected, e\.g\. 'extra\.weight'"),
    "bad-card-field": (_zero_std, r"\(its card\): field 'std' must be 3 finite numbers > 0"),
    "unknown-preset": (_unknown_preset, r"\(its card\): unknown model preset 'no_such_preset'"),
}


@pytest.mark.parametrize("kind", list(EDITS))
def test_bad_contents_are_one_line_naming_the_file(kind: str, tmp_path: Path, rt_bundle: Path) -> None:
    edit, reason = EDITS[kind]
    path = _bundle(tmp_path, rt_bundle, edit)
    with pytest.raises(EdgesegError, match=rf"^{path}\b.*{reason}") as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_sound_bundle_still_loads(rt_bundle: Path) -> None:
    model, card = load_model(rt_bundle)
    assert card == load_card(rt_bundle)
    assert card.preset == "dbmsnet_r18_os16" and not model.training
    saved = torch.load(rt_bundle, weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
