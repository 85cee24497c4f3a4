"""plan(cfg): every refusal the options can cause comes before any data is decoded."""

from __future__ import annotations

import pytest

from cnnkit.errors import InputError
from cnnkit.training.plan import TrainPlan, plan
from tests.helpers import make_image_folder, tiny_config


def _no_decoding(monkeypatch) -> None:
    import cnnkit.data.registry as registry

    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded before the refusal")

    monkeypatch.setattr(registry, "load_dataset", refuse)


def test_patience_without_validation_is_refused_before_the_data_is_read(
    tmp_path, monkeypatch
) -> None:
    make_image_folder(tmp_path / "ds", ["a", "b"], 3, 16, 16)
    cfg = tiny_config(tmp_path, dataset=str(tmp_path / "ds"), val_split=0.0, patience=2)
    _no_decoding(monkeypatch)
    with pytest.raises(InputError, match="--patience stops on validation accuracy"):
        plan(cfg)


def test_a_val_folder_is_validation_enough_for_patience(tmp_path) -> None:
    for split in ("train", "val"):
        make_image_folder(tmp_path / "ds" / split, ["a", "b"], 3, 16, 16)
    cfg = tiny_config(tmp_path, dataset=str(tmp_path / "ds"), val_split=0.0, patience=2)
    assert isinstance(plan(cfg), TrainPlan)


def test_the_plan_holds_every_choice(tmp_path) -> None:
    p = plan(tiny_config(tmp_path, devices="1"))
    assert p.kind == "image" and p.devices == 1 and p.device.accelerator == "cpu"
    assert p.cfg.lr is not None and p.request.name == "shapes" and not p.is_child


def test_a_dataset_folder_is_scanned_once(tmp_path, monkeypatch) -> None:
    import cnnkit.data.folders as folders
    from cnnkit.training.fit import fit

    make_image_folder(tmp_path / "ds", ["a", "b"], 4, 16, 16)
    scans: list[str] = []
    real = folders.scan_folder

    def counted(root):
        scans.append(str(root))
        return real(root)

    monkeypatch.setattr(folders, "scan_folder", counted)
    summary = fit(tiny_config(tmp_path, dataset=str(tmp_path / "ds"), limit=None))
    assert summary is not None and len(scans) == 1, scans
